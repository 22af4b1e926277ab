// Aspect-ratio buckets (kohya's grid), choosing an image's bucket, and the resize-to-cover + crop geometry as numbers.
import type { Rng } from './rng.js';

export interface Bucket {
  width: number;
  height: number;
}

export interface BucketOptions {
  /** Side of the square whose area every bucket stays within (pixels). */
  resolution: number;
  /** Bucket sides are multiples of this (pixels; 64 for SD 1.x). */
  step: number;
  /** Smallest and largest bucket side (pixels). */
  min: number;
  max: number;
  /**
   * Not a filter: the recipe turns the widest aspect ratio into the side limits (see
   * `bucketSideLimits`), so the grid near them can reach past it (768x320 is 2.4:1 at 512).
   */
  maxAspect?: number;
}

/**
 * The side limits the recipe derives from a widest aspect ratio a: min = floor(sqrt(res²/a)) and
 * max = ceil(sqrt(res²·a)), to multiples of `step` (512, a = 2, step 64 → 320 and 768).
 */
export function bucketSideLimits(resolution: number, maxAspect: number, step = 64): { min: number; max: number } {
  const a = maxAspect < 1 ? 1 / maxAspect : maxAspect;
  const min = Math.max(step, Math.floor(Math.sqrt((resolution * resolution) / a) / step) * step);
  const max = Math.ceil(Math.sqrt(resolution * resolution * a) / step) * step;
  return { min, max };
}

/**
 * kohya's bucket grid: the largest square within the area, then for each width from min to max in
 * steps, the tallest height (a multiple of step, at most max) keeping width·height <= resolution²,
 * kept (with its transpose) when that height is at least min. Sorted by width, then height.
 */
export function makeBuckets(o: BucketOptions): Bucket[] {
  for (const [k, v] of [['resolution', o.resolution], ['step', o.step], ['min', o.min], ['max', o.max]] as const)
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`Bucket ${k} must be a whole number >= 1 (got ${v})`);
  if (o.min > o.max) throw new RangeError(`The minimum bucket side ${o.min} is above the maximum ${o.max}`);
  const area = o.resolution * o.resolution;
  const out = new Map<string, Bucket>();
  const add = (width: number, height: number) => out.set(`${width}x${height}`, { width, height });
  const square = Math.floor(o.resolution / o.step) * o.step;
  if (square >= o.step) add(square, square);
  for (let w = o.min; w <= o.max; w += o.step) {
    const h = Math.min(o.max, Math.floor(Math.floor(area / w) / o.step) * o.step);
    if (h < o.min) continue;
    add(w, h);
    add(h, w);
  }
  return [...out.values()].sort((a, b) => a.width - b.width || a.height - b.height);
}

/**
 * The bucket whose aspect ratio (width/height) is nearest the image's, by plain difference as kohya
 * measures it; the first in the list wins a tie.
 */
export function assignBucket(width: number, height: number, buckets: readonly Bucket[]): Bucket {
  if (!buckets.length) throw new RangeError('No buckets to choose from');
  const r = width / height;
  let best = buckets[0]!;
  let err = Math.abs(best.width / best.height - r);
  for (const b of buckets) {
    const e = Math.abs(b.width / b.height - r);
    if (e < err) [best, err] = [b, e];
  }
  return best;
}

export interface Crop {
  /** Scale applied to the image so it covers the bucket. */
  scale: number;
  /** Size of the scaled image (pixels, rounded half up as kohya does). */
  width: number;
  height: number;
  /** Top-left of the bucket-sized crop in the scaled image (pixels). */
  x: number;
  y: number;
}

/**
 * Resize to cover the bucket (the side that fits exactly decides the scale), then crop the excess:
 * centred (half the excess, rounded down), or at a uniformly random offset when an rng is given.
 */
export function coverCrop(width: number, height: number, b: Bucket, rng?: Rng): Crop {
  const scale = Math.max(b.width / width, b.height / height);
  const sw = Math.max(b.width, Math.floor(width * scale + 0.5));
  const sh = Math.max(b.height, Math.floor(height * scale + 0.5));
  const ex = sw - b.width;
  const ey = sh - b.height;
  const x = rng ? rng.int(0, ex + 1) : Math.floor(ex / 2);
  const y = rng ? rng.int(0, ey + 1) : Math.floor(ey / 2);
  return { scale, width: sw, height: sh, x, y };
}

/** One image's bucket, with the image's own size (for the aspect error). */
export interface BucketAssignment {
  bucket: Bucket;
  width: number;
  height: number;
}

export interface BucketInfo {
  /** Keyed by the bucket's index in the full grid (or among the used ones when no grid is given). */
  buckets: Record<string, { resolution: [number, number]; count: number }>;
  /** Mean |bucket aspect - image aspect| over images (repeats not counted); present when sizes are known. */
  mean_img_ar_error?: number;
}

/**
 * `ss_bucket_info` as kohya writes it: non-empty buckets with their image counts (repeats
 * included), keyed by index in the grid, and the mean aspect-ratio error.
 */
export function bucketInfo(assigned: readonly (Bucket | BucketAssignment)[], o: { repeats?: number; grid?: readonly Bucket[] } = {}): BucketInfo {
  const repeats = o.repeats ?? 1;
  const key = (b: Bucket) => `${b.width}x${b.height}`;
  const counts = new Map<string, { b: Bucket; n: number }>();
  let arError = 0;
  let sized = 0;
  for (const a of assigned) {
    const b = 'bucket' in a ? a.bucket : a;
    const e = counts.get(key(b)) ?? { b, n: 0 };
    e.n += repeats;
    counts.set(key(b), e);
    if ('bucket' in a) {
      arError += Math.abs(b.width / b.height - a.width / a.height);
      sized++;
    }
  }
  const grid = o.grid ?? [...counts.values()].map((e) => e.b).sort((a, b) => a.width - b.width || a.height - b.height);
  const buckets: BucketInfo['buckets'] = {};
  grid.forEach((b, i) => {
    const e = counts.get(key(b));
    if (e) buckets[String(i)] = { resolution: [b.width, b.height], count: e.n };
  });
  const missing = [...counts.keys()].filter((k) => !grid.some((b) => key(b) === k));
  if (missing.length) throw new RangeError(`Buckets not in the grid: ${missing.join(', ')}`);
  return sized ? { buckets, mean_img_ar_error: arError / sized } : { buckets };
}

/** The settings that decide a run's buckets (a TrainConfig has them all). */
export interface BucketSettings {
  resolution: number;
  enableBuckets: boolean;
  bucketStep: number;
  minBucket: number;
  maxBucket: number;
  maxAspect: number;
}

/**
 * The buckets a run trains in: kohya's grid with its side limits widened to take the resolution
 * itself, or the one square at the resolution when bucketing is off.
 */
export function trainingBuckets(c: BucketSettings): Bucket[] {
  const r = c.resolution;
  if (!c.enableBuckets) return [{ width: r, height: r }];
  return makeBuckets({ resolution: r, step: c.bucketStep, min: Math.min(c.minBucket, r), max: Math.max(c.maxBucket, r), maxAspect: c.maxAspect });
}

/** How many of these image sizes train in each bucket of `grid`, in the grid's order (buckets without images left out). */
export function bucketCounts(sizes: readonly { width: number; height: number }[], grid: readonly Bucket[]): { width: number; height: number; images: number }[] {
  const n = new Map<Bucket, number>();
  for (const s of sizes) {
    const b = assignBucket(s.width, s.height, grid);
    n.set(b, (n.get(b) ?? 0) + 1);
  }
  return grid.filter((b) => n.has(b)).map((b) => ({ width: b.width, height: b.height, images: n.get(b)! }));
}
