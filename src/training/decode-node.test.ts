// Node image decoding: WebP files made by libwebp's own tools (see testdata/README.md), PNGs of every colour
// type and bit depth from independent encoders (testdata/make-pngs.py), and broken files named in the error
// with a reason a person understands (never the decoders' internals).
import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeImageNode } from './decode-node.js';
import { webpOrientation } from './exif.js';
import { ImageDecodeError, type RgbaImage } from './images.js';
import { chunk, concat, ihdr, png, pngChunkRanges, pngOf } from './testdata/craft.js';

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

// PNGs from independent encoders (testdata/make-pngs.py: Pillow, netpbm, optipng), 13x11, pixels by formula.
describe('PNG in Node: every colour type and bit depth against known pixels', () => {
  const W = 13;
  const H = 11;
  const t = (x: number, y: number) => 3 * x + 5 * y;
  const paletteColour = (i: number) => [(i * 37) % 256, (i * 91 + 17) % 256, (i * 53 + 101) % 256];
  const rgb = (x: number, y: number) => [(x * 40) % 256, (y * 50) % 256, ((x + y) * 30) % 256];
  const expectPixels = (name: string, want: (x: number, y: number) => number[]) => {
    const img = decodeImageNode(name, file(name));
    expect([img.width, img.height, img.data.length]).toEqual([W, H, W * H * 4]);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) expect(pixel(img, x, y), `${name} at (${x}, ${y})`).toEqual(want(x, y));
  };

  it('palette PNGs at 1, 2, 4 and 8 bits expand to their colours (not grey indices), tRNS alpha included', () => {
    for (const [name, n] of [['pal1.png', 2], ['pal2.png', 4], ['pal4.png', 16], ['pal4-adam7.png', 16]] as const)
      expectPixels(name, (x, y) => [...paletteColour(t(x, y) % n), 255]);
    expectPixels('pal8-trns.png', (x, y) => [...paletteColour(t(x, y) % 200), ((t(x, y) % 200) * 29) % 256]);
  });

  it('grey at 1, 2, 4, 8 (tRNS colour key) and 16 bits, interlaced or not', () => {
    const grey = (v: number, a = 255) => [v, v, v, a];
    expectPixels('grey1.png', (x, y) => grey(255 * (t(x, y) % 2)));
    for (const name of ['grey2.png', 'grey2-adam7.png']) expectPixels(name, (x, y) => grey((t(x, y) % 4) * 85));
    expectPixels('grey4.png', (x, y) => grey((t(x, y) % 16) * 17));
    expectPixels('grey8-trns.png', (x, y) => grey(t(x, y), t(x, y) === 21 ? 0 : 255));
    for (const name of ['grey16.png', 'grey16-adam7.png']) expectPixels(name, (x, y) => grey(Math.round(((t(x, y) * 2741) % 65536) / 257)));
  });

  it('RGB with a tRNS colour key: that colour is transparent, the rest opaque', () => {
    const key = rgb(2, 1).join();
    for (const name of ['rgb-trns.png', 'rgb-trns-adam7.png']) expectPixels(name, (x, y) => [...rgb(x, y), rgb(x, y).join() === key ? 0 : 255]);
  });
});

describe('broken PNG and JPEG files: named, with a reason a person understands', () => {
  const sample = (name: string) => new Uint8Array(readFileSync(new URL(`../../public/samples/${name}`, import.meta.url)));
  const withoutChunk = (b: Uint8Array, type: string) => concat(b.subarray(0, 8), ...pngChunkRanges(b).filter((c) => c.type !== type).map((c) => b.subarray(c.start, c.end)));
  /** A JPEG without its segments of marker `m` (0xc4 DHT, 0xdb DQT), up to the first scan. */
  const withoutSegment = (b: Uint8Array, m: number) => {
    const keep: Uint8Array[] = [b.subarray(0, 2)];
    let p = 2;
    while (b[p + 1] !== 0xda) {
      const end = p + 2 + ((b[p + 2]! << 8) | b[p + 3]!);
      if (b[p + 1] !== m) keep.push(b.subarray(p, end));
      p = end;
    }
    return concat(...keep, b.subarray(p));
  };
  const reason = (name: string, bytes: Uint8Array) => {
    try {
      decodeImageNode(name, bytes);
    } catch (e) {
      expect(e).toBeInstanceOf(ImageDecodeError);
      return (e as Error).message;
    }
    throw new Error(`${name} decoded`);
  };

  it('a palette PNG without PLTE is refused, not read as grey indices', () => {
    expect(reason('nopal.png', withoutChunk(file('pal4.png'), 'PLTE'))).toMatch(/^nopal\.png: a palette PNG without its PLTE chunk/);
  });

  it('an unknown row filter is "corrupt PNG data", not "Unsupported filter: 91"', () => {
    const raw = new Uint8Array(4 * (1 + 12));
    raw[13] = 91; // row 2's filter byte
    expect(reason('filter.png', pngOf(4, 4, raw))).toBe('filter.png: corrupt PNG data (row 2 has an unknown filter type 91) — skipped');
  });

  it('truncated, checksum-damaged and chunkless PNGs say so', () => {
    const b = sample('brick.png');
    expect(reason('cut.png', b.subarray(0, b.length >> 1))).toMatch(/^cut\.png: truncated PNG file \(it ends inside the IDAT chunk\)/);
    const flipped = b.slice();
    const at = pngChunkRanges(b).find((c) => c.type === 'IDAT')!.start + 40;
    flipped[at] = flipped[at]! ^ 0x10;
    expect(reason('crc.png', flipped)).toMatch(/^crc\.png: corrupt PNG data \(the IDAT chunk's checksum does not match/);
    expect(reason('short.png', pngOf(8, 8, new Uint8Array(8 * 25)).subarray(0, 33).slice())).toMatch(/no IDAT pixel data/);
    expect(reason('rows.png', png(ihdr(8, 8), chunk('IDAT', deflateSync(new Uint8Array(3 * 25)))))).toMatch(/^rows\.png: truncated PNG file \(the pixel data stops 37% of the way through the 8 rows\)/);
  });

  it('a JPEG without Huffman or quantisation tables says which, not "Cannot read properties of undefined"', () => {
    expect(reason('mjpeg.jpg', withoutSegment(sample('rocket.jpg'), 0xc4))).toMatch(/^mjpeg\.jpg: a JPEG without Huffman tables/);
    const noDqt = reason('nodqt.jpg', withoutSegment(sample('rocket.jpg'), 0xdb));
    expect(noDqt).toMatch(/^nodqt\.jpg: corrupt or truncated JPEG data/);
    expect(noDqt).not.toMatch(/undefined|Cannot read|typed array/);
  });
});
