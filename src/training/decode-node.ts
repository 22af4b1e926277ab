// Image decoding in Node (CLI, tests): PNG by png.ts, JPEG via jpeg-js, WebP via libwebp (wasm), with EXIF orientation.
// The header is read and checked first (image-header.ts: format, no zero size, at most MAX_IMAGE_PIXELS), so
// nothing is inflated or allocated for a bomb; the decoders' own messages become ones a person can act on.
// The page decodes with the browser instead (decode-browser.ts), after the same header checks.
import { decode as decodeWebp } from '@cwasm/webp';
import jpeg from 'jpeg-js';
import { applyOrientation, jpegOrientation, webpOrientation } from './exif.js';
import { FORMAT_NAME, MAX_IMAGE_PIXELS, readImageHeader, type ImageHeader } from './image-header.js';
import { ImageDecodeError, type RgbaImage } from './images.js';
import { decodePng } from './png.js';

/** jpeg-js's allocation cap: its blocks, planes and output for a 4-component image at MAX_IMAGE_PIXELS (~1.8 GB) fit. */
const JPEG_MEMORY_MB = 2048;

/** Decode PNG, JPEG or WebP bytes to RGBA; anything else (or a broken file) raises ImageDecodeError naming the file. */
export function decodeImageNode(name: string, bytes: Uint8Array): RgbaImage {
  const header = readImageHeader(name, bytes);
  let img: RgbaImage;
  try {
    img = header.format === 'png' ? decodePng(name, bytes, header) : header.format === 'jpeg' ? decodeJpeg(name, bytes, header) : decodeWebpFile(name, bytes);
  } catch (e) {
    if (e instanceof ImageDecodeError) throw e;
    // A safety net: whatever a decoder throws reaches the user as a reason, never as a stack trace.
    const memory = e instanceof RangeError && /alloc|memory/i.test(e.message);
    throw new ImageDecodeError(name, memory ? `not enough memory to decode this ${header.width}x${header.height} image` : `corrupt ${FORMAT_NAME[header.format]} data (the decoder failed on it)`);
  }
  if (img.width * img.height * 4 !== img.data.length || img.width < 1 || img.height < 1 || img.width * img.height > MAX_IMAGE_PIXELS)
    throw new ImageDecodeError(name, `the decoder returned a ${img.width}x${img.height} image that does not match its data, so the file is corrupt`);
  return img;
}

function decodeJpeg(name: string, bytes: Uint8Array, header: ImageHeader): RgbaImage {
  const { sof, huffmanTables } = header.jpeg!;
  if (sof > 0xc2)
    throw new ImageDecodeError(name, `a lossless, hierarchical or arithmetic-coded JPEG (SOF marker 0x${sof.toString(16)}), which the command line cannot read; re-save it as a baseline or progressive JPEG`);
  if (!huffmanTables) throw new ImageDecodeError(name, 'a JPEG without Huffman tables (e.g. a motion-JPEG frame); re-save it as a normal JPEG');
  let j: { width: number; height: number; data: Uint8Array };
  try {
    j = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: MAX_IMAGE_PIXELS / 1e6, maxMemoryUsageInMB: JPEG_MEMORY_MB });
  } catch (e) {
    throw new ImageDecodeError(name, jpegReason(e));
  }
  if (j.width !== header.width || j.height !== header.height) throw new ImageDecodeError(name, 'corrupt JPEG data (the decoded size differs from the header)');
  return applyOrientation({ width: j.width, height: j.height, data: j.data }, jpegOrientation(bytes));
}

/** jpeg-js's messages (and the TypeErrors its parser hits on damaged input) in words a person can act on. */
function jpegReason(e: unknown): string {
  const m = e instanceof Error && e.constructor === Error ? e.message : '';
  if (/huffman|ACn/i.test(m)) return 'corrupt JPEG data (the compressed image data is damaged)';
  if (/marker/.test(m)) return 'corrupt JPEG data (a damaged or misplaced segment marker)';
  if (/DQT/.test(m)) return 'corrupt JPEG data (a damaged quantisation table)';
  if (/sampling factor/.test(m)) return 'corrupt JPEG data (an invalid sampling factor in the frame header)';
  if (/color mode/.test(m)) return 'a JPEG colour layout the command line cannot read (neither grey, YCbCr, RGB nor CMYK)';
  if (/single frame/.test(m)) return 'a JPEG with more than one frame, which the command line cannot read';
  if (/maxMemoryUsage|allocate/.test(m)) return `the JPEG would need more than ${JPEG_MEMORY_MB} MB to decode: scale it down first`;
  return 'corrupt or truncated JPEG data (its tables or segments are damaged)';
}

function decodeWebpFile(name: string, bytes: Uint8Array): RgbaImage {
  let w: { width: number; height: number; data: Uint8ClampedArray };
  try {
    w = decodeWebp(bytes);
  } catch {
    // libwebp says only that it failed; an animation is the one valid file it refuses.
    const animated = bytes.length > 20 && String.fromCharCode(...bytes.subarray(12, 16)) === 'VP8X' && (bytes[20]! & 0x02) !== 0;
    throw new ImageDecodeError(name, animated ? 'an animated WebP; save one frame as a still image' : 'corrupt or truncated WebP data');
  }
  return applyOrientation({ width: w.width, height: w.height, data: w.data }, webpOrientation(bytes));
}
