// The declared size of a PNG, JPEG or WebP, read from its header before anything is inflated, and the
// checks both decoders (decode-node.ts, decode-browser.ts) make with it: the format is one we read,
// the size is not zero and not above MAX_IMAGE_PIXELS, and a JPEG's scan is not absurdly short for it.
import { ascii } from './exif.js';
import { ImageDecodeError } from './images.js';

/** The most pixels an image may declare (64 megapixels, e.g. 8000x8000); larger ones are refused unread. */
export const MAX_IMAGE_PIXELS = 64_000_000;

/** The formats the trainer reads. */
export type ImageFormat = 'png' | 'jpeg' | 'webp';

/** PNG IHDR fields beyond the size. */
export interface PngHeader {
  depth: number;
  colorType: number;
  interlaced: boolean;
}

/** What a header declares. */
export interface ImageHeader {
  format: ImageFormat;
  width: number;
  height: number;
  /** PNG only. */
  png?: PngHeader;
  /** JPEG only: the SOF marker (0xc0 baseline, 0xc1 extended, 0xc2 progressive, ...) and whether a DHT came before the first scan. */
  jpeg?: { sof: number; huffmanTables: boolean };
}

/** The format by its magic bytes, or undefined. */
export function imageFormat(b: Uint8Array): ImageFormat | undefined {
  if (b.length >= 8 && b[0] === 0x89 && ascii(b, 1, 4) === 'PNG') return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 12 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 12) === 'WEBP') return 'webp';
  return undefined;
}

/** How messages name each format. */
export const FORMAT_NAME: Record<ImageFormat, string> = { png: 'PNG', jpeg: 'JPEG', webp: 'WebP' };

/**
 * Read and check the header: a PNG, JPEG or WebP whose width and height are both at least 1 and whose
 * pixel count is at most MAX_IMAGE_PIXELS; anything else raises ImageDecodeError naming `name`.
 */
export function readImageHeader(name: string, bytes: Uint8Array): ImageHeader {
  const format = imageFormat(bytes);
  if (!format) throw new ImageDecodeError(name, 'not a PNG, JPEG or WebP image');
  const fail: Fail = (what, why) => new ImageDecodeError(name, `${what} ${FORMAT_NAME[format]} file (${why})`);
  const h = format === 'png' ? pngHeader(bytes, fail) : format === 'jpeg' ? jpegHeader(bytes, fail) : webpHeader(bytes, fail);
  if (h.width === 0 || h.height === 0)
    throw new ImageDecodeError(name, `the ${FORMAT_NAME[format]} header declares a ${h.width}x${h.height} image (no pixels), nothing to train on`);
  if (h.png?.colorType === 3 && pngPaletteBeforePixels(bytes) === false)
    throw new ImageDecodeError(name, 'a palette PNG without its PLTE chunk (the colour table is missing); re-save the image');
  const pixels = h.width * h.height;
  if (pixels > MAX_IMAGE_PIXELS)
    throw new ImageDecodeError(
      name,
      `the ${FORMAT_NAME[format]} declares ${h.width}x${h.height} pixels (${Math.round(pixels / 1e6)} megapixels), above the limit of ${MAX_IMAGE_PIXELS / 1e6} megapixels; scale it down first`,
    );
  return h;
}

type Fail = (what: 'corrupt' | 'truncated' | 'truncated or corrupt', why: string) => ImageDecodeError;
const u16 = (b: Uint8Array, p: number) => (b[p]! << 8) | b[p + 1]!;
const u32 = (b: Uint8Array, p: number) => ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
const u16le = (b: Uint8Array, p: number) => b[p]! | (b[p + 1]! << 8);
const u24le = (b: Uint8Array, p: number) => b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16);

// Bit depths each PNG colour type allows (grey, -, RGB, palette, grey+alpha, -, RGBA).
const PNG_DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };

function pngHeader(b: Uint8Array, fail: Fail): ImageHeader {
  if (b.length < 33) throw fail('truncated', 'it ends inside the header');
  if (u32(b, 8) !== 13 || ascii(b, 12, 16) !== 'IHDR') throw fail('corrupt', 'the IHDR header chunk does not come first');
  const [depth, colorType, compression, filter, interlace] = [b[24]!, b[25]!, b[26]!, b[27]!, b[28]!];
  if (!PNG_DEPTHS[colorType]?.includes(depth)) throw fail('corrupt', `colour type ${colorType} with bit depth ${depth} does not exist`);
  if (compression !== 0 || filter !== 0 || interlace > 1) throw fail('corrupt', 'unknown compression, filter or interlace method in IHDR');
  return { format: 'png', width: u32(b, 16), height: u32(b, 20), png: { depth, colorType, interlaced: interlace === 1 } };
}

/** Whether a PLTE chunk comes before the first IDAT; undefined when the chunk headers are too damaged to tell. */
function pngPaletteBeforePixels(b: Uint8Array): boolean | undefined {
  for (let p = 8; p + 8 <= b.length; p += 12 + u32(b, p)) {
    const type = ascii(b, p + 4, p + 8);
    if (type === 'PLTE') return true;
    if (type === 'IDAT') return false;
    if (!/^[A-Za-z]{4}$/.test(type)) return undefined;
  }
  return undefined;
}

// Start-of-frame markers: every 0xc0-0xcf except DHT (c4), JPG (c8) and DAC (cc).
const isSof = (m: number) => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;

function jpegHeader(b: Uint8Array, fail: Fail): ImageHeader {
  let p = 2;
  let frame: { sof: number; width: number; height: number } | undefined;
  let huffmanTables = false;
  for (;;) {
    while (p < b.length && b[p] === 0xff && b[p + 1] === 0xff) p++; // fill bytes
    if (p + 4 > b.length) throw fail('truncated', frame ? 'it ends before the image data' : 'it ends before the frame header');
    if (b[p] !== 0xff) throw fail('corrupt', 'a segment marker is missing before the image data');
    const marker = b[p + 1]!;
    if (marker === 0xd9) throw fail('corrupt', frame ? 'it ends before any image data' : 'it has no frame header (SOF)');
    if ((marker >= 0xd0 && marker <= 0xd8) || marker === 0x01) {
      p += 2; // markers without a length
      continue;
    }
    const len = u16(b, p + 2);
    if (len < 2) throw fail('corrupt', 'a segment declares a length below 2');
    if (isSof(marker)) {
      if (p + 9 > b.length) throw fail('truncated', 'it ends inside the frame header');
      frame ??= { sof: marker, height: u16(b, p + 5), width: u16(b, p + 7) };
    } else if (marker === 0xc4) huffmanTables = true;
    else if (marker === 0xda) {
      if (!frame) throw fail('corrupt', 'no frame header (SOF) before the image data');
      checkScanLength(frame, b.length - (p + 2 + len), fail);
      return { format: 'jpeg', width: frame.width, height: frame.height, jpeg: { sof: frame.sof, huffmanTables } };
    }
    p += 2 + len;
  }
}

/**
 * A Huffman-coded JPEG (not arithmetic: SOF9 and above) spends at least one bit on every 8x8 block of
 * its full-resolution component (a DC code). So a scan shorter than blocks/8 bytes cannot hold the
 * declared size: it is a bomb header over a tiny scan, or a file cut short, and either way refused
 * before a decoder allocates the declared size.
 */
function checkScanLength(frame: { sof: number; width: number; height: number }, scanBytes: number, fail: Fail): void {
  if (frame.sof >= 0xc9 || frame.width === 0 || frame.height === 0) return;
  const blocks = Math.ceil(frame.width / 8) * Math.ceil(frame.height / 8);
  if (scanBytes * 8 < blocks)
    throw fail('truncated or corrupt', `${scanBytes} bytes of image data cannot hold the declared ${frame.width}x${frame.height} pixels; at least ${Math.ceil(blocks / 8)} are needed`);
}

function webpHeader(b: Uint8Array, fail: Fail): ImageHeader {
  if (b.length < 30) throw fail('truncated', 'it ends inside the header');
  const chunk = ascii(b, 12, 16);
  const d = 20; // first chunk's payload
  if (chunk === 'VP8X') return { format: 'webp', width: u24le(b, d + 4) + 1, height: u24le(b, d + 7) + 1 };
  if (chunk === 'VP8L') {
    if (b[d] !== 0x2f) throw fail('corrupt', 'bad lossless signature');
    const bits = (b[d + 1]! | (b[d + 2]! << 8) | (b[d + 3]! << 16) | (b[d + 4]! << 24)) >>> 0;
    return { format: 'webp', width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (chunk === 'VP8 ') {
    if (b[d + 3] !== 0x9d || b[d + 4] !== 0x01 || b[d + 5] !== 0x2a) throw fail('corrupt', 'bad lossy frame start code');
    return { format: 'webp', width: u16le(b, d + 6) & 0x3fff, height: u16le(b, d + 8) & 0x3fff };
  }
  throw fail('corrupt', `unknown first chunk "${ascii(b, 12, 16).replace(/[^\x20-\x7e]/g, '?')}"`);
}
