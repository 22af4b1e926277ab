// EXIF orientation: the tag read from a real JPEG's APP1 segment, and the eight orientations applied as browsers display them.
import jpeg from 'jpeg-js';
import { describe, expect, it } from 'vitest';
import { decodeImageNode } from './decode-node.js';
import { applyOrientation, jpegOrientation } from './exif.js';

/** A minimal big-endian Exif APP1 segment whose IFD0 holds only the orientation tag. */
function exifSegment(orientation: number): Uint8Array {
  const tiff = [0x4d, 0x4d, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0, 0, 0, 0, 0, 0, 0];
  const body = [...'Exif'].map((c) => c.charCodeAt(0)).concat([0, 0], tiff);
  const len = body.length + 2;
  return Uint8Array.from([0xff, 0xe1, len >> 8, len & 255, ...body]);
}

/** 16x8 JPEG: left half red, right half blue, with the given orientation tag after SOI. */
function taggedJpeg(orientation: number | null): Uint8Array {
  const [w, h] = [16, 8];
  const data = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set(x < w / 2 ? [255, 0, 0, 255] : [0, 0, 255, 255], 4 * (y * w + x));
  const j = new Uint8Array(jpeg.encode({ width: w, height: h, data }, 95).data);
  if (orientation === null) return j;
  const seg = exifSegment(orientation);
  const out = new Uint8Array(j.length + seg.length);
  out.set(j.subarray(0, 2));
  out.set(seg, 2);
  out.set(j.subarray(2), 2 + seg.length);
  return out;
}

describe('EXIF orientation', () => {
  it('reads the tag, and 1 when absent', () => {
    expect(jpegOrientation(taggedJpeg(6))).toBe(6);
    expect(jpegOrientation(taggedJpeg(3))).toBe(3);
    expect(jpegOrientation(taggedJpeg(null))).toBe(1);
  });

  it('puts the right stored corner at the displayed top-left for all eight values', () => {
    const [w, h] = [3, 2];
    const img = { width: w, height: h, data: new Uint8ClampedArray(w * h * 4) };
    const corners = { TL: [0, 0], TR: [w - 1, 0], BL: [0, h - 1], BR: [w - 1, h - 1] } as const;
    Object.values(corners).forEach(([x, y], i) => (img.data[4 * (y * w + x)] = 10 * (i + 1)));
    const mark = (c: keyof typeof corners) => 10 * (Object.keys(corners).indexOf(c) + 1);
    // The EXIF specification's table: which stored corner is shown at the top-left.
    const expected: Record<number, keyof typeof corners> = { 1: 'TL', 2: 'TR', 3: 'BR', 4: 'BL', 5: 'TL', 6: 'BL', 7: 'BR', 8: 'TR' };
    for (let o = 1; o <= 8; o++) {
      const r = applyOrientation(img, o);
      expect([r.width, r.height]).toEqual(o >= 5 ? [h, w] : [w, h]);
      expect(r.data[0]).toBe(mark(expected[o]!));
    }
  });

  it('the Node decoder shows a JPEG tagged "rotate 90° clockwise" upright', () => {
    const img = decodeImageNode('rotated.jpg', taggedJpeg(6));
    expect([img.width, img.height]).toEqual([8, 16]);
    const px = (x: number, y: number) => [...img.data.subarray(4 * (y * img.width + x), 4 * (y * img.width + x) + 3)];
    // The stored left (red) half is now on top, the blue half below.
    expect(px(4, 2)[0]).toBeGreaterThan(200);
    expect(px(4, 13)[2]).toBeGreaterThan(200);
  });
});
