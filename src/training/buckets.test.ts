// Aspect-ratio buckets: the kohya grid and its limits, nearest-aspect assignment, resize-to-cover crops and ss_bucket_info.
import { describe, expect, it } from 'vitest';
import { assignBucket, bucketInfo, bucketSideLimits, coverCrop, makeBuckets, type Bucket } from './buckets.js';
import { Rng } from './rng.js';

const at512 = makeBuckets({ resolution: 512, step: 64, min: 320, max: 768 });
const names = (bs: readonly Bucket[]) => bs.map((b) => `${b.width}x${b.height}`);

describe('bucket grid', () => {
  it('at 512 with sides 320 to 768: the kohya grid', () => {
    expect(names(at512)).toEqual(['320x704', '320x768', '384x640', '448x576', '512x512', '576x448', '640x384', '704x320', '768x320']);
  });
  it('every bucket: sides multiples of the step within [min, max], area at most res²', () => {
    for (const [res, min, max] of [[512, 320, 768], [768, 512, 1088], [1024, 256, 2048], [64, 64, 128]] as const) {
      const bs = makeBuckets({ resolution: res, step: 64, min, max });
      expect(bs.length).toBeGreaterThan(0);
      for (const b of bs) {
        expect(b.width % 64 + (b.height % 64)).toBe(0);
        expect(b.width * b.height).toBeLessThanOrEqual(res * res);
        expect(Math.min(b.width, b.height)).toBeGreaterThanOrEqual(Math.min(min, res));
        expect(Math.max(b.width, b.height)).toBeLessThanOrEqual(max);
      }
      expect(names(bs)).toContain(`${res}x${res}`);
    }
  });
  it('side limits come from the max aspect as the guide computes them', () => {
    expect(bucketSideLimits(512, 2)).toEqual({ min: 320, max: 768 });
    expect(bucketSideLimits(512, 0.5)).toEqual({ min: 320, max: 768 });
    expect(bucketSideLimits(768, 2)).toEqual({ min: 512, max: 1088 });
    expect(bucketSideLimits(512, 1)).toEqual({ min: 512, max: 512 });
    expect(names(makeBuckets({ resolution: 512, step: 64, ...bucketSideLimits(512, 1) }))).toEqual(['512x512']);
  });
  it('refuses inconsistent options', () => {
    expect(() => makeBuckets({ resolution: 512, step: 64, min: 768, max: 320 })).toThrow(RangeError);
    expect(() => makeBuckets({ resolution: 512, step: 0, min: 320, max: 768 })).toThrow(RangeError);
  });
});

describe('assignment', () => {
  it('square images go to the square bucket', () => {
    expect(assignBucket(1024, 1024, at512)).toEqual({ width: 512, height: 512 });
    expect(assignBucket(300, 300, at512)).toEqual({ width: 512, height: 512 });
  });
  it('picks the nearest aspect ratio by difference', () => {
    expect(assignBucket(1000, 500, at512)).toEqual({ width: 704, height: 320 }); // 2.0: |2.2-2| < |1.667-2|
    expect(assignBucket(500, 1000, at512)).toEqual({ width: 320, height: 704 });
    expect(assignBucket(1920, 1080, at512)).toEqual({ width: 640, height: 384 }); // 1.778 vs 1.667 / 2.2
    expect(assignBucket(3000, 500, at512)).toEqual({ width: 768, height: 320 }); // widest there is
    expect(assignBucket(600, 480, at512)).toEqual({ width: 576, height: 448 }); // 1.25 vs 1.286
  });
});

describe('resize to cover and crop', () => {
  it('scales so both sides cover the bucket and centres the crop', () => {
    expect(coverCrop(1000, 500, { width: 704, height: 320 })).toEqual({ scale: 0.704, width: 704, height: 352, x: 0, y: 16 });
    expect(coverCrop(1920, 1080, { width: 640, height: 384 })).toEqual({ scale: 384 / 1080, width: 683, height: 384, x: 21, y: 0 });
    expect(coverCrop(256, 256, { width: 512, height: 512 })).toEqual({ scale: 2, width: 512, height: 512, x: 0, y: 0 });
  });
  it('a random crop stays inside and is reproducible', () => {
    const xs = new Set<number>();
    for (let s = 0; s < 50; s++) {
      const c = coverCrop(1920, 1080, { width: 640, height: 384 }, new Rng(s));
      expect(c.x).toBeGreaterThanOrEqual(0);
      expect(c.x).toBeLessThanOrEqual(683 - 640);
      expect(c.y).toBe(0);
      expect(coverCrop(1920, 1080, { width: 640, height: 384 }, new Rng(s))).toEqual(c);
      xs.add(c.x);
    }
    expect(xs.size).toBeGreaterThan(10);
  });
});

describe('bucketInfo (ss_bucket_info)', () => {
  it('counts images per bucket with repeats, keyed by grid index, with the mean aspect error', () => {
    const a = [
      { bucket: { width: 512, height: 512 }, width: 800, height: 800 },
      { bucket: { width: 704, height: 320 }, width: 1000, height: 500 },
      { bucket: { width: 512, height: 512 }, width: 900, height: 1000 },
    ];
    const info = bucketInfo(a, { repeats: 2, grid: at512 });
    expect(info.buckets).toEqual({ '4': { resolution: [512, 512], count: 4 }, '7': { resolution: [704, 320], count: 2 } });
    expect(info.mean_img_ar_error).toBeCloseTo((0 + 0.2 + 0.1) / 3, 12);
  });
  it('accepts plain buckets (no sizes: no aspect error) and indexes among the used ones without a grid', () => {
    expect(bucketInfo([{ width: 640, height: 384 }, { width: 512, height: 512 }, { width: 640, height: 384 }])).toEqual({
      buckets: { '0': { resolution: [512, 512], count: 1 }, '1': { resolution: [640, 384], count: 2 } },
    });
    expect(() => bucketInfo([{ width: 100, height: 100 }], { grid: at512 })).toThrow(/not in the grid/);
  });
});
