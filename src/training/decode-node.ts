// Image decoding in Node (CLI, tests): PNG via fast-png, JPEG via jpeg-js, WebP via libwebp (wasm), with EXIF orientation. The page decodes with the browser instead.
import { decode as decodeWebp } from '@cwasm/webp';
import { decode as decodePng } from 'fast-png';
import jpeg from 'jpeg-js';
import { applyOrientation, ascii, jpegOrientation, webpOrientation } from './exif.js';
import { ImageDecodeError, type RgbaImage } from './images.js';

/** Decode PNG, JPEG or WebP bytes to RGBA; anything else (or a broken file) raises ImageDecodeError naming the file. */
export function decodeImageNode(name: string, bytes: Uint8Array): RgbaImage {
  const isPng = bytes[0] === 0x89 && bytes[1] === 0x50;
  const isJpeg = bytes[0] === 0xff && bytes[1] === 0xd8;
  const isWebp = bytes.length >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'WEBP';
  try {
    if (isPng) {
      const p = decodePng(bytes);
      const n = p.width * p.height;
      const out = new Uint8ClampedArray(n * 4);
      const ch = p.channels;
      const max = p.depth === 16 ? 257 : 1;
      for (let i = 0; i < n; i++) {
        const g = (k: number) => Number(p.data[i * ch + k]) / max;
        if (ch >= 3) {
          out[4 * i] = g(0);
          out[4 * i + 1] = g(1);
          out[4 * i + 2] = g(2);
          out[4 * i + 3] = ch === 4 ? g(3) : 255;
        } else {
          out[4 * i] = out[4 * i + 1] = out[4 * i + 2] = g(0);
          out[4 * i + 3] = ch === 2 ? g(1) : 255;
        }
      }
      return { width: p.width, height: p.height, data: out };
    }
    if (isJpeg) {
      const j = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024 });
      return applyOrientation({ width: j.width, height: j.height, data: j.data }, jpegOrientation(bytes));
    }
    if (isWebp) {
      const w = decodeWebp(bytes);
      return applyOrientation({ width: w.width, height: w.height, data: w.data }, webpOrientation(bytes));
    }
  } catch (e) {
    throw new ImageDecodeError(name, `the image is corrupt or truncated (${(e as Error).message})`);
  }
  throw new ImageDecodeError(name, 'not a PNG, JPEG or WebP image');
}
