// EXIF orientation of a JPEG (the APP1 "Exif" segment's IFD0 tag 0x0112) or a WebP (its RIFF "EXIF" chunk), and applying it to RGBA pixels.
import type { RgbaImage } from './images.js';

/** The bytes [from, to) as Latin-1 text: chunk ids and magic numbers. */
export function ascii(b: Uint8Array, from: number, to: number): string {
  return String.fromCharCode(...b.subarray(from, to));
}

/** The orientation tag, 1 to 8 (1 = as stored), or 1 when the file has none or it cannot be read. */
export function jpegOrientation(bytes: Uint8Array): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 2;
  while (p + 4 <= bytes.length && bytes[p] === 0xff) {
    const marker = bytes[p + 1]!;
    if (marker === 0xda || marker === 0xd9) break; // start of scan / end: no more metadata
    const len = dv.getUint16(p + 2);
    if (marker === 0xe1 && p + 10 <= bytes.length && ascii(bytes, p + 4, p + 10) === 'Exif\0\0') return tiffOrientation(dv, p + 10, Math.min(bytes.length, p + 2 + len));
    p += 2 + len;
  }
  return 1;
}

/** The orientation tag of a WebP: the extended format's "EXIF" chunk holds a TIFF block (some writers prefix "Exif\0\0"). */
export function webpOrientation(bytes: Uint8Array): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 12;
  while (p + 8 <= bytes.length) {
    const id = ascii(bytes, p, p + 4);
    const len = dv.getUint32(p + 4, true);
    const body = p + 8;
    const end = Math.min(bytes.length, body + len);
    if (id === 'EXIF') {
      const skip = end - body >= 6 && ascii(bytes, body, body + 6) === 'Exif\0\0' ? 6 : 0;
      return tiffOrientation(dv, body + skip, end);
    }
    p = body + len + (len & 1); // chunks are padded to even sizes
  }
  return 1;
}

function tiffOrientation(dv: DataView, t: number, end: number): number {
  if (t + 8 > end) return 1;
  const order = dv.getUint16(t);
  if (order !== 0x4949 && order !== 0x4d4d) return 1;
  const le = order === 0x4949;
  const ifd = t + dv.getUint32(t + 4, le);
  if (ifd + 2 > end) return 1;
  const n = dv.getUint16(ifd, le);
  for (let i = 0; i < n; i++) {
    const e = ifd + 2 + 12 * i;
    if (e + 12 > end) return 1;
    if (dv.getUint16(e, le) === 0x0112) {
      const v = dv.getUint16(e + 8, le);
      return v >= 1 && v <= 8 ? v : 1;
    }
  }
  return 1;
}

/**
 * The image as it should be displayed: orientations 2 to 8 mirror and/or rotate the stored pixels
 * (5 to 8 swap width and height), as browsers do with `imageOrientation: 'from-image'`.
 */
export function applyOrientation(img: RgbaImage, orientation: number): RgbaImage {
  if (orientation <= 1 || orientation > 8) return img;
  const { width: w, height: h } = img;
  const swap = orientation >= 5;
  const [W, H] = swap ? [h, w] : [w, h];
  const out = new Uint8ClampedArray(W * H * 4);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      // The stored pixel (sx, sy) that lands at displayed (x, y).
      let sx: number, sy: number;
      switch (orientation) {
        case 2: [sx, sy] = [w - 1 - x, y]; break;
        case 3: [sx, sy] = [w - 1 - x, h - 1 - y]; break;
        case 4: [sx, sy] = [x, h - 1 - y]; break;
        case 5: [sx, sy] = [y, x]; break;
        case 6: [sx, sy] = [y, h - 1 - x]; break;
        case 7: [sx, sy] = [w - 1 - y, h - 1 - x]; break;
        default: [sx, sy] = [w - 1 - y, x]; break; // 8
      }
      const s = 4 * (sy * w + sx);
      out.set(img.data.subarray(s, s + 4), 4 * (y * W + x));
    }
  return { width: W, height: H, data: out };
}
