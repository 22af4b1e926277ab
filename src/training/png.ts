// PNG decoding for Node (CLI, tests) with bounded work: only the critical chunks are read (IHDR,
// PLTE, IDAT) plus tRNS; every other ancillary chunk (iCCP, zTXt, iTXt, ...) is skipped, never
// inflated. The pixel data is inflated into a buffer of exactly the size IHDR implies and inflation
// stops there, so a small file cannot make it allocate more than the declared (already limited)
// image. All bit depths, palettes (PLTE + tRNS alpha), colour-key transparency and Adam7 interlacing.
import { Unzlib } from 'fflate';
import { ascii } from './exif.js';
import type { ImageHeader } from './image-header.js';
import { ImageDecodeError, type RgbaImage } from './images.js';

const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
// Adam7 passes as [x0, y0, dx, dy]; a plain image is one pass [0, 0, 1, 1].
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]] as const;
const u32 = (b: Uint8Array, p: number) => ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;

let crcTable: Uint32Array | undefined;
function crc32(b: Uint8Array, from: number, to: number): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = from; i < to; i++) c = crcTable[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Decode a PNG whose header `readImageHeader` has checked; damage raises ImageDecodeError naming `name`. */
export function decodePng(name: string, bytes: Uint8Array, header: ImageHeader): RgbaImage {
  const { width, height } = header;
  const { depth, colorType, interlaced } = header.png!;
  const fail: Fail = (why, truncated = false) => new ImageDecodeError(name, truncated ? `truncated PNG file (${why})` : `corrupt PNG data (${why})`);
  const { palette, trns, idat } = readChunks(bytes, colorType, fail);
  if (colorType === 3 && !palette) throw new ImageDecodeError(name, 'a palette PNG without its PLTE chunk (the colour table is missing); re-save the image');

  const ch = CHANNELS[colorType]!;
  const bitsPP = depth * ch;
  const passes = (interlaced ? ADAM7 : [[0, 0, 1, 1] as const]).map(([x0, y0, dx, dy]) => {
    const w = Math.ceil((width - x0) / dx);
    const h = Math.ceil((height - y0) / dy);
    return { x0, y0, dx, dy, w: Math.max(0, w), h: w > 0 ? Math.max(0, h) : 0, rowBytes: 1 + Math.ceil((Math.max(0, w) * bitsPP) / 8) };
  });
  const raw = inflateExactly(idat, passes.reduce((s, p) => s + p.h * p.rowBytes, 0), height, fail);

  const out = new Uint8ClampedArray(width * height * 4);
  const bpp = Math.max(1, bitsPP >> 3);
  const maxV = (1 << depth) - 1;
  const keyLen = colorType === 0 ? 2 : colorType === 2 ? 6 : 0; // colour-key tRNS: one 16-bit sample per channel
  const key = trns && keyLen && trns.length >= keyLen ? [0, 1, 2].map((i) => (trns[2 * i]! << 8) | trns[2 * i + 1]!) : undefined;
  const pal = colorType === 3 ? paletteRgba(palette!, trns) : undefined; // an RGB image's PLTE is only a hint
  let row = 0;
  for (const pass of passes) {
    for (let y = 0; y < pass.h; y++, row += pass.rowBytes) {
      unfilter(raw, row, pass.rowBytes, y > 0 ? row - pass.rowBytes : -1, bpp, y, fail);
      const o0 = 4 * ((pass.y0 + y * pass.dy) * width + pass.x0);
      const step = 4 * pass.dx;
      if (depth === 8 && !pal) {
        rowRgba8(raw, row + 1, out, o0, step, pass.w, ch, key);
        continue;
      }
      if (depth === 16) {
        rowRgba16(raw, row + 1, out, o0, step, pass.w, ch, key);
        continue;
      }
      // Palettes (1 to 8 bits) and sub-byte grey (1, 2, 4 bits): one channel.
      for (let x = 0, o = o0; x < pass.w; x++, o += step) {
        const bit = x * depth;
        const v = depth === 8 ? raw[row + 1 + x]! : (raw[row + 1 + (bit >> 3)]! >> (8 - depth - (bit & 7))) & maxV;
        if (pal) {
          if (4 * v >= pal.length) throw fail(`pixel colour index ${v} is beyond the palette's ${pal.length / 4} colours`);
          out[o] = pal[4 * v]!;
          out[o + 1] = pal[4 * v + 1]!;
          out[o + 2] = pal[4 * v + 2]!;
          out[o + 3] = pal[4 * v + 3]!;
        } else {
          out[o] = out[o + 1] = out[o + 2] = (v * 255) / maxV;
          out[o + 3] = key && v === key[0] ? 0 : 255;
        }
      }
    }
  }
  return { width, height, data: out };
}

type Fail = (why: string, truncated?: boolean) => ImageDecodeError;

/** The same for 16-bit samples (big-endian; v / 257 rounds to 8 bits, never a tie); the colour key compares all 16 bits. */
function rowRgba16(d: Uint8Array, s: number, out: Uint8ClampedArray, o: number, step: number, w: number, ch: number, key: number[] | undefined): void {
  const at = (i: number) => (d[i]! << 8) | d[i + 1]!;
  for (let x = 0; x < w; x++, s += 2 * ch, o += step) {
    const r = at(s);
    if (ch >= 3) {
      const g = at(s + 2);
      const b = at(s + 4);
      out[o] = r / 257;
      out[o + 1] = g / 257;
      out[o + 2] = b / 257;
      out[o + 3] = ch === 4 ? at(s + 6) / 257 : key && r === key[0] && g === key[1] && b === key[2] ? 0 : 255;
    } else {
      out[o] = out[o + 1] = out[o + 2] = r / 257;
      out[o + 3] = ch === 2 ? at(s + 2) / 257 : key && r === key[0] ? 0 : 255;
    }
  }
}

/** One row of 8-bit grey, grey+alpha, RGB or RGBA samples to RGBA (the common case, kept tight). */
function rowRgba8(d: Uint8Array, s: number, out: Uint8ClampedArray, o: number, step: number, w: number, ch: number, key: number[] | undefined): void {
  for (let x = 0; x < w; x++, s += ch, o += step) {
    const r = d[s]!;
    if (ch >= 3) {
      const g = d[s + 1]!;
      const b = d[s + 2]!;
      out[o] = r;
      out[o + 1] = g;
      out[o + 2] = b;
      out[o + 3] = ch === 4 ? d[s + 3]! : key && r === key[0] && g === key[1] && b === key[2] ? 0 : 255;
    } else {
      out[o] = out[o + 1] = out[o + 2] = r;
      out[o + 3] = ch === 2 ? d[s + 1]! : key && r === key[0] ? 0 : 255;
    }
  }
}

/** Walk the chunks: checksums of the critical ones, the palette and tRNS, and the IDAT payloads in order. */
function readChunks(b: Uint8Array, colorType: number, fail: Fail): { palette?: Uint8Array; trns?: Uint8Array; idat: Uint8Array[] } {
  let palette: Uint8Array | undefined;
  let trns: Uint8Array | undefined;
  const idat: Uint8Array[] = [];
  let p = 8;
  while (p + 8 <= b.length) {
    const len = u32(b, p);
    const type = ascii(b, p + 4, p + 8);
    if (!/^[A-Za-z]{4}$/.test(type)) {
      if (idat.length) break; // damage after the pixel data: inflation below tells whether it was all there
      throw fail('a chunk header is damaged');
    }
    if (p + 12 + len > b.length) {
      if (idat.length && type !== 'IDAT') break;
      throw fail(`it ends inside the ${type} chunk`, true);
    }
    const body = b.subarray(p + 8, p + 8 + len);
    const critical = type === 'IHDR' || type === 'PLTE' || type === 'IDAT';
    if (critical && crc32(b, p + 4, p + 8 + len) !== u32(b, p + 8 + len)) throw fail(`the ${type} chunk's checksum does not match, the file is damaged`);
    if (type === 'IEND') break;
    if (type === 'PLTE' && !idat.length && colorType !== 0 && colorType !== 4) {
      if (len === 0 || len % 3 !== 0 || len > 768) throw fail(`a PLTE chunk of ${len} bytes (must be 3 to 768, a multiple of 3)`);
      palette = body;
    } else if (type === 'tRNS' && !idat.length) trns = body;
    else if (type === 'IDAT') idat.push(body);
    else if (type !== 'IHDR' && (type.charCodeAt(0) & 0x20) === 0 && type !== 'PLTE') throw fail(`unknown critical chunk ${type}`);
    p += 12 + len;
  }
  if (!idat.length) throw fail('no IDAT pixel data');
  return { palette, trns, idat };
}

/** The palette as RGBA, alpha from tRNS (entries without one are opaque). */
function paletteRgba(plte: Uint8Array, trns: Uint8Array | undefined): Uint8Array {
  const n = plte.length / 3;
  const rgba = new Uint8Array(4 * n);
  for (let i = 0; i < n; i++) {
    rgba.set(plte.subarray(3 * i, 3 * i + 3), 4 * i);
    rgba[4 * i + 3] = trns && i < trns.length ? trns[i]! : 255;
  }
  return rgba;
}

/** Inflate the IDAT stream into exactly `size` bytes and stop there; a stream that ends short is a truncated file. */
function inflateExactly(idat: Uint8Array[], size: number, height: number, fail: Fail): Uint8Array {
  const raw = new Uint8Array(size);
  let at = 0;
  const z = new Unzlib((chunk) => {
    const n = Math.min(chunk.length, size - at);
    raw.set(chunk.subarray(0, n), at);
    at += n;
  });
  const SLICE = 16384; // bounds each push's output to ~16 MiB (deflate expands at most ~1032:1)
  try {
    for (const part of idat)
      for (let i = 0; i < part.length && at < size; i += SLICE) z.push(part.subarray(i, i + SLICE));
    if (at < size) z.push(new Uint8Array(0), true);
  } catch {
    if (at < size) throw fail('the compressed pixel data is damaged');
  }
  if (at < size) throw fail(`the pixel data stops ${Math.floor((100 * at) / size)}% of the way through the ${height} rows`, true);
  return raw;
}

/** Undo one row's filter in place (the row's first byte is its filter type; `prev` is -1 on a pass's first row). */
function unfilter(d: Uint8Array, row: number, n: number, prev: number, bpp: number, y: number, fail: Fail): void {
  const f = d[row]!;
  const s = row + 1;
  const len = n - 1;
  // The row above, or zeros on a pass's first row.
  const up = prev < 0 ? zeroRow(len) : d;
  const u = prev < 0 ? 0 : prev + 1;
  switch (f) {
    case 0:
      return;
    case 1:
      for (let i = bpp; i < len; i++) d[s + i] = d[s + i]! + d[s + i - bpp]!;
      return;
    case 2:
      for (let i = 0; i < len; i++) d[s + i] = d[s + i]! + up[u + i]!;
      return;
    case 3:
      for (let i = 0; i < bpp && i < len; i++) d[s + i] = d[s + i]! + (up[u + i]! >> 1);
      for (let i = bpp; i < len; i++) d[s + i] = d[s + i]! + ((d[s + i - bpp]! + up[u + i]!) >> 1);
      return;
    case 4:
      for (let i = 0; i < bpp && i < len; i++) d[s + i] = d[s + i]! + up[u + i]!; // a = c = 0: Paeth picks b
      for (let i = bpp; i < len; i++) {
        const a = d[s + i - bpp]!;
        const b = up[u + i]!;
        const c = up[u + i - bpp]!;
        const pa = Math.abs(b - c);
        const pb = Math.abs(a - c);
        const pc = Math.abs(a + b - 2 * c);
        d[s + i] = d[s + i]! + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
      }
      return;
    default:
      throw fail(`row ${y + 1} has an unknown filter type ${f}`);
  }
}

let zeros = new Uint8Array(0);
function zeroRow(n: number): Uint8Array {
  if (zeros.length < n) zeros = new Uint8Array(n);
  return zeros;
}
