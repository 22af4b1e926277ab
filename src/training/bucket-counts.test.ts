// trainingBuckets and bucketCounts: the grid a run trains in and how many images fall in each bucket (the page's bucket line).
import { describe, expect, it } from 'vitest';
import { bucketCounts, makeBuckets, trainingBuckets } from './buckets.js';

const settings = { resolution: 512, enableBuckets: true, bucketStep: 64, minBucket: 320, maxBucket: 768, maxAspect: 2 };

describe('trainingBuckets', () => {
  it('is the recipe grid at 512, one square with bucketing off, and takes the resolution inside narrow side limits', () => {
    expect(trainingBuckets(settings)).toEqual(makeBuckets({ resolution: 512, step: 64, min: 320, max: 768, maxAspect: 2 }));
    expect(trainingBuckets({ ...settings, enableBuckets: false })).toEqual([{ width: 512, height: 512 }]);
    // Side limits below the resolution widen to it, so the square is always in the grid.
    expect(trainingBuckets({ ...settings, minBucket: 64, maxBucket: 128 })).toContainEqual({ width: 512, height: 512 });
  });
});

describe('bucketCounts', () => {
  it('counts images per bucket in the grid’s order, leaving empty buckets out', () => {
    const sizes = [{ width: 1024, height: 1024 }, { width: 640, height: 480 }, { width: 500, height: 500 }, { width: 480, height: 640 }];
    const counts = bucketCounts(sizes, trainingBuckets(settings));
    expect(counts).toEqual([{ width: 448, height: 576, images: 1 }, { width: 512, height: 512, images: 2 }, { width: 576, height: 448, images: 1 }]);
    expect(bucketCounts(sizes, trainingBuckets({ ...settings, enableBuckets: false }))).toEqual([{ width: 512, height: 512, images: 4 }]);
    expect(bucketCounts([], trainingBuckets(settings))).toEqual([]);
  });
});
