// Aspect-ratio buckets (kohya's scheme) and the resize-to-cover-then-crop geometry.
import type { Rng } from './rng.js';

export interface Bucket {
  width: number;
  height: number;
}

export interface BucketOptions {
  resolution: number;
  step: number;
  min: number;
  max: number;
  maxAspect: number;
}

/** Every bucket: sides multiples of `step` within [min, max], area at most resolution², aspect at most maxAspect. */
export function makeBuckets(o: BucketOptions): Bucket[] {
  const area = o.resolution * o.resolution;
  const out = new Map<string, Bucket>();
  const add = (w: number, h: number) => out.set(`${w}x${h}`, { width: w, height: h });
  add(o.resolution, o.resolution);
  for (let w = o.min; w <= o.max; w += o.step) {
    const h = Math.min(o.max, Math.floor(area / w / o.step) * o.step);
    if (h < o.min || Math.max(w, h) / Math.min(w, h) > o.maxAspect) continue;
    add(w, h);
    add(h, w);
  }
  return [...out.values()].sort((a, b) => a.width / a.height - b.width / b.height);
}

/** The bucket whose aspect ratio is closest to the image's (compared in log space). */
export function assignBucket(width: number, height: number, buckets: readonly Bucket[]): Bucket {
  const r = Math.log(width / height);
  let best = buckets[0]!;
  for (const b of buckets) if (Math.abs(Math.log(b.width / b.height) - r) < Math.abs(Math.log(best.width / best.height) - r)) best = b;
  return best;
}

export interface Crop {
  /** Scale applied to the image so it covers the bucket. */
  scale: number;
  /** Top-left of the crop in scaled pixels. */
  x: number;
  y: number;
}

/** Resize to cover the bucket, then crop (centred, or at a random offset). */
export function coverCrop(width: number, height: number, b: Bucket, rng?: Rng): Crop {
  const scale = Math.max(b.width / width, b.height / height);
  const sw = Math.round(width * scale);
  const sh = Math.round(height * scale);
  const ex = Math.max(0, sw - b.width);
  const ey = Math.max(0, sh - b.height);
  return rng ? { scale, x: rng.int(0, ex + 1), y: rng.int(0, ey + 1) } : { scale, x: Math.floor(ex / 2), y: Math.floor(ey / 2) };
}

/** `ss_bucket_info`: resolutions and how many images each holds. */
export function bucketInfo(assigned: readonly Bucket[]): { buckets: Record<string, { resolution: [number, number]; count: number }> } {
  const m = new Map<string, { resolution: [number, number]; count: number }>();
  for (const b of assigned) {
    const k = `${b.width}x${b.height}`;
    const e = m.get(k) ?? { resolution: [b.width, b.height] as [number, number], count: 0 };
    e.count++;
    m.set(k, e);
  }
  return { buckets: Object.fromEntries([...m.values()].map((v, i) => [String(i), v])) };
}
