// The declared size read before decoding: real files agree with their decoded size, and bombs (issue 11's
// cases, built here with cheap zlib streams of zeros) are refused or decoded in bounded time and memory.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeImageNode } from './decode-node.js';
import { MAX_IMAGE_PIXELS, readImageHeader } from './image-header.js';
import { ImageDecodeError } from './images.js';
import { be32, chunk, concat, ihdr, jpegSofOffset, png, zerosZlib } from './testdata/craft.js';

const sample = (name: string) => new Uint8Array(readFileSync(new URL(`../../public/samples/${name}`, import.meta.url)));
const testdata = (name: string) => new Uint8Array(readFileSync(new URL(`./testdata/${name}`, import.meta.url)));

/**
 * Decodes `bytes` as `name` in a fresh Node process (testdata/decode-measure.ts): its time, and its peak RSS growth over the
 * RSS before decoding. Not in this worker: a process's peak RSS is its lifetime's, so here it would hold earlier files' peaks.
 */
function measure(name: string, bytes: Uint8Array): { result: { width: number; height: number } | { error: string; message: string }; seconds: number; peakGrowthMB: number } {
  const dir = mkdtempSync(join(tmpdir(), 'lorasmith-measure-'));
  try {
    const file = join(dir, 'image');
    writeFileSync(file, bytes);
    const script = fileURLToPath(new URL('./testdata/decode-measure.ts', import.meta.url));
    const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', script, name, file], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`decode-measure failed (${r.status}): ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A JPEG sample with its frame header rewritten to declare width x height. */
function jpegDeclaring(width: number, height: number): Uint8Array {
  const b = sample('rocket.jpg').slice();
  const sof = jpegSofOffset(b);
  b.set([height >> 8, height & 255, width >> 8, width & 255], sof + 5);
  return b;
}

describe('readImageHeader', () => {
  it('reads the size every real sample decodes to', () => {
    for (const name of ['astronaut.png', 'chelsea.png', 'coffee.jpg', 'hubble.jpg']) {
      const h = readImageHeader(name, sample(name));
      const img = decodeImageNode(name, sample(name));
      expect([h.width, h.height], name).toEqual([img.width, img.height]);
    }
    for (const name of ['halves-lossless.webp', 'halves-lossy.webp', 'halves-orientation6.webp']) expect(readImageHeader(name, testdata(name))).toMatchObject({ format: 'webp', width: 16, height: 8 });
    expect(readImageHeader('pal4.png', testdata('pal4.png')).png).toEqual({ depth: 4, colorType: 3, interlaced: false });
  });

  it('the limit is 64 megapixels: 8000x8000 passes, one more row is refused with the limit in the message', () => {
    expect(MAX_IMAGE_PIXELS).toBe(64_000_000);
    expect(readImageHeader('ok.png', png(ihdr(8000, 8000))).width).toBe(8000);
    expect(() => readImageHeader('big.png', png(ihdr(8000, 8001)))).toThrow(/big\.png: the PNG declares 8000x8001 pixels \(64 megapixels\), above the limit of 64 megapixels/);
  });

  it('a Huffman JPEG needs at least one bit of scan per 8x8 block: 8000x8000 takes 125000 bytes', () => {
    const jpegWithScan = (bytes: number) => {
      const b = sample('rocket.jpg');
      const sof = jpegSofOffset(b);
      const head = b.slice(0, b.findIndex((_, i) => i > sof && b[i] === 0xff && b[i + 1] === 0xda));
      head.set([8000 >> 8, 8000 & 255, 8000 >> 8, 8000 & 255], sof + 5);
      const sos = new Uint8Array([0xff, 0xda, 0, 12, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0]);
      return concat(head, sos, new Uint8Array(bytes));
    };
    expect(readImageHeader('ok.jpg', jpegWithScan(125000))).toMatchObject({ width: 8000, height: 8000 });
    expect(() => readImageHeader('short.jpg', jpegWithScan(124999))).toThrow(/short\.jpg: truncated or corrupt JPEG file \(124999 bytes of image data cannot hold the declared 8000x8000 pixels; at least 125000 are needed\)/);
  });

  it('a WebP canvas of 16777216 squared is refused from its header', () => {
    const b = testdata('halves-orientation6.webp').slice();
    expect(String.fromCharCode(...b.subarray(12, 16))).toBe('VP8X');
    b.set([255, 255, 255, 255, 255, 255], 24);
    expect(() => readImageHeader('wide.webp', b)).toThrow(/wide\.webp: the WebP declares 16777216x16777216 pixels/);
  });

});

describe('readImageHeader: refusals by name, bombs and bounded memory', () => {
  it('zero width or height is refused by name, in every format', () => {
    expect(() => decodeImageNode('flat.png', png(ihdr(640, 0), chunk('IDAT', zerosZlib(0))))).toThrow(/flat\.png: the PNG header declares a 640x0 image \(no pixels\)/);
    expect(() => decodeImageNode('thin.png', png(ihdr(0, 480), chunk('IDAT', zerosZlib(480))))).toThrow(/thin\.png: .*0x480 image/);
    expect(() => decodeImageNode('flat.jpg', jpegDeclaring(256, 0))).toThrow(/flat\.jpg: the JPEG header declares a 256x0 image/);
    const lossy = concat(new TextEncoder().encode('RIFF'), be32(0), new TextEncoder().encode('WEBPVP8 '), be32(0), new Uint8Array([0, 0, 0, 0x9d, 0x01, 0x2a, 0, 0, 16, 0]), new Uint8Array(20));
    expect(() => decodeImageNode('flat.webp', lossy)).toThrow(/flat\.webp: the WebP header declares a 0x16 image/);
  });

  it('PNG bombs from issue 11 are refused from the header: fast, without inflating anything', () => {
    // 100000x100000 over 1.2 GB of zeros (1.2 MB compressed); 30000x30000 RGB over 2.7 GB of zeros (2.6 MB).
    const cases = [
      ['bomb.png', png(ihdr(100000, 100000, 8, 0), chunk('IDAT', zerosZlib(1.2e9))), /100000x100000 pixels \(10000 megapixels\), above the limit of 64 megapixels/],
      ['huge.png', png(ihdr(30000, 30000), chunk('IDAT', zerosZlib(30000 * (1 + 90000)))), /30000x30000 pixels \(900 megapixels\)/],
    ] as const;
    for (const [name, bytes, message] of cases) {
      const m = measure(name, bytes);
      expect(m.result).toMatchObject({ error: ImageDecodeError.name, message: expect.stringMatching(message) });
      expect(m.seconds).toBeLessThan(2);
      expect(m.peakGrowthMB).toBeLessThan(200);
    }
  });

  it('a JPEG declaring 8000x8000 over a tiny scan is refused before jpeg-js allocates the declared size', () => {
    const m = measure('tiny-scan.jpg', jpegDeclaring(8000, 8000));
    expect(m.result).toMatchObject({ error: ImageDecodeError.name });
    expect('message' in m.result && m.result.message).toMatch(/tiny-scan\.jpg: truncated or corrupt JPEG file \(\d+ bytes of image data cannot hold the declared 8000x8000 pixels/);
    expect(m.seconds).toBeLessThan(2);
    expect(m.peakGrowthMB).toBeLessThan(200);
  });

  it('a small image whose IDAT inflates to 1 GB, or with a 500 MB iCCP profile, decodes in bounded memory', () => {
    const overfull = png(ihdr(1000, 1000), chunk('IDAT', zerosZlib(1e9))); // needs 3 MB; the stream has 1 GB
    const icc = concat(new TextEncoder().encode('bomb\0\0'), zerosZlib(5e8));
    const iccp = png(ihdr(64, 64), chunk('iCCP', icc), chunk('IDAT', zerosZlib(64 * (1 + 64 * 3))));
    for (const [name, bytes, size] of [['overfull.png', overfull, 1000], ['iccp.png', iccp, 64]] as const) {
      const m = measure(name, bytes);
      expect(m.result, name).toMatchObject({ width: size, height: size });
      expect(m.seconds, name).toBeLessThan(2);
      expect(m.peakGrowthMB, name).toBeLessThan(200);
    }
  });
});
