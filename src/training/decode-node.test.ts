// Node image decoding of WebP files made by libwebp's own tools (see testdata/README.md): lossy and
// lossless with alpha, the extended format's EXIF orientation, and broken files named in the error.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeImageNode } from './decode-node.js';
import { webpOrientation } from './exif.js';
import { ImageDecodeError, type RgbaImage } from './images.js';

const file = (name: string) => new Uint8Array(readFileSync(new URL(`./testdata/${name}`, import.meta.url)));
const pixel = (img: RgbaImage, x: number, y: number) => [...img.data.subarray(4 * (y * img.width + x), 4 * (y * img.width + x) + 4)];

describe('WebP in Node', () => {
  it('lossless: exact pixels, alpha kept for flattening', () => {
    const img = decodeImageNode('halves-lossless.webp', file('halves-lossless.webp'));
    expect([img.width, img.height]).toEqual([16, 8]);
    expect(pixel(img, 0, 0)).toEqual([255, 0, 0, 255]);
    expect(pixel(img, 15, 7)).toEqual([0, 0, 255, 128]);
  });

  it('lossy with an alpha plane: colours within compression error', () => {
    const img = decodeImageNode('halves-lossy.webp', file('halves-lossy.webp'));
    expect([img.width, img.height]).toEqual([16, 8]);
    const near = (got: number[], want: number[]) => got.forEach((v, i) => expect(Math.abs(v - want[i]!)).toBeLessThanOrEqual(24));
    near(pixel(img, 1, 4), [255, 0, 0, 255]);
    near(pixel(img, 14, 4), [0, 0, 255, 128]);
  });

  it('honours the EXIF orientation chunk (6: rotated a quarter turn clockwise for display)', () => {
    const bytes = file('halves-orientation6.webp');
    expect(webpOrientation(bytes)).toBe(6);
    expect(webpOrientation(file('halves-lossless.webp'))).toBe(1);
    const img = decodeImageNode('halves-orientation6.webp', bytes);
    // Stored 16x8 (red left, blue right) is displayed 8x16 with the red half on top.
    expect([img.width, img.height]).toEqual([8, 16]);
    expect(pixel(img, 0, 0)).toEqual([255, 0, 0, 255]);
    expect(pixel(img, 7, 7)).toEqual([255, 0, 0, 255]);
    expect(pixel(img, 0, 8)).toEqual([0, 0, 255, 128]);
    expect(pixel(img, 7, 15)).toEqual([0, 0, 255, 128]);
  });

  it('a truncated WebP or an unknown format is an error naming the file', () => {
    const cut = file('halves-lossy.webp').subarray(0, 40);
    expect(() => decodeImageNode('cut.webp', cut)).toThrow(ImageDecodeError);
    expect(() => decodeImageNode('cut.webp', cut)).toThrow(/cut\.webp.*corrupt or truncated/);
    expect(() => decodeImageNode('notes.gif', new TextEncoder().encode('GIF89a....'))).toThrow(/notes\.gif.*not a PNG, JPEG or WebP/);
  });
});
