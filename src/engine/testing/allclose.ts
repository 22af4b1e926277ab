// Comparing GPU results with references: tolerances are stated per call, failures show the worst element.

/** Absolute and relative tolerance: |a - b| <= atol + rtol * |b|. */
export interface Tolerance {
  atol: number;
  rtol: number;
}

/** Deterministic pseudo-random numbers for test data (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` uniform values in [lo, hi) from `seed`. */
export function randomArray(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/** null when every element is within tolerance, else a description of the worst one. */
export function compare(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance): string | null {
  if (actual.length !== expected.length) return `length ${actual.length} != expected ${expected.length}`;
  let worst = -1;
  let worstExcess = 0;
  let bad = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const err = Math.abs(a - e);
    const lim = tol.atol + tol.rtol * Math.abs(e);
    if (!(err <= lim)) {
      bad++;
      const excess = Number.isNaN(err) ? Infinity : err / lim;
      if (excess > worstExcess || worst < 0) {
        worstExcess = excess;
        worst = i;
      }
    }
  }
  if (bad === 0) return null;
  return `${bad}/${actual.length} elements out of tolerance (atol ${tol.atol}, rtol ${tol.rtol}); worst at ${worst}: got ${actual[worst]}, expected ${expected[worst]}`;
}

/** Throw unless `actual` matches `expected` within `tol`. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance, what = 'values'): void {
  const msg = compare(actual, expected, tol);
  if (msg) throw new Error(`${what}: ${msg}`);
}

/** Largest |a - b| / (max |b| + tiny), a scale-free error for reports. */
export function maxRelError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let m = 0;
  let s = 1e-12;
  for (let i = 0; i < expected.length; i++) s = Math.max(s, Math.abs(expected[i]!));
  for (let i = 0; i < expected.length; i++) m = Math.max(m, Math.abs(actual[i]! - expected[i]!));
  return m / s;
}
