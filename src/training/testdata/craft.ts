// Test helpers that build and edit PNG/JPEG bytes: chunks with checksums, cheap zlib streams of
// gigabytes of zeros (decompression bombs), and the chunk or segment layout of a real file.
import { constants, crc32, deflateRawSync, deflateSync } from 'node:zlib';

const enc = new TextEncoder();

/** Big-endian uint32 bytes. */
export function be32(n: number): Uint8Array {
  return new Uint8Array([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.length) - p.length);
  return out;
}

/** One PNG chunk: length, type, body, CRC over type and body. */
export function chunk(type: string, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const tb = concat(enc.encode(type), body);
  return concat(be32(body.length), tb, be32(crc32(tb)));
}

export const PNG_SIGNATURE = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function ihdr(width: number, height: number, depth = 8, colorType = 2, interlace = 0): Uint8Array {
  return chunk('IHDR', concat(be32(width), be32(height), new Uint8Array([depth, colorType, 0, 0, interlace])));
}

/** A PNG of the given chunks (IHDR first), signature prepended and IEND appended. */
export function png(...chunks: Uint8Array[]): Uint8Array {
  return concat(PNG_SIGNATURE, ...chunks, chunk('IEND'));
}

/** A PNG whose IDAT is `raw` (filter bytes included) compressed by zlib. */
export function pngOf(width: number, height: number, raw: Uint8Array, depth = 8, colorType = 2): Uint8Array {
  return png(ihdr(width, height, depth, colorType), chunk('IDAT', deflateSync(raw)));
}

/**
 * A zlib stream that inflates to `length` zero bytes, built in milliseconds: one sync-flushed deflate
 * block of 1 MiB of zeros (about 1 KiB) repeated, a final empty block, and the Adler-32 of the zeros.
 */
export function zerosZlib(length: number): Uint8Array {
  const MiB = 1 << 20;
  const block = deflateRawSync(new Uint8Array(MiB), { finishFlush: constants.Z_SYNC_FLUSH });
  const tail = deflateRawSync(new Uint8Array(length % MiB), { finishFlush: constants.Z_SYNC_FLUSH });
  const n = Math.floor(length / MiB);
  const out = new Uint8Array(2 + n * block.length + tail.length + 2 + 4);
  out.set([0x78, 0x9c]);
  for (let i = 0; i < n; i++) out.set(block, 2 + i * block.length);
  out.set(tail, 2 + n * block.length);
  out.set([0x03, 0x00], 2 + n * block.length + tail.length); // final, fixed-Huffman, end of block
  out.set(be32(((length % 65521) << 16) | 1), out.length - 4); // Adler-32 of zeros: a = 1, b = length
  return out;
}

/** The chunks of a PNG as [type, start, end) byte ranges (start at the length field, end after the CRC). */
export function pngChunkRanges(b: Uint8Array): { type: string; start: number; end: number }[] {
  const out: { type: string; start: number; end: number }[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let p = 8; p + 12 <= b.length; ) {
    const len = dv.getUint32(p);
    out.push({ type: String.fromCharCode(...b.subarray(p + 4, p + 8)), start: p, end: p + 12 + len });
    p += 12 + len;
  }
  return out;
}

/** The offset of a JPEG's first start-of-frame segment marker (0xffc0-0xffc2), or -1. */
export function jpegSofOffset(b: Uint8Array): number {
  for (let p = 2; p + 4 <= b.length; ) {
    const m = b[p + 1]!;
    if (m >= 0xc0 && m <= 0xc2) return p;
    p += 2 + ((b[p + 2]! << 8) | b[p + 3]!);
  }
  return -1;
}
