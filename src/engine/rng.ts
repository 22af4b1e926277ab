// Seeded, splittable random numbers (Philox4x32-10) that give bit-identical runs on every machine and engine.
//
// Why counter-based: draw n of a stream is a pure function of (key, n), so streams never overlap,
// and children made by `fork(label)` or `split()` get their own key instead of an offset into one
// shared cycle. Why our own log/sin/cos: ECMAScript fixes + - * / and sqrt to IEEE-754 but leaves
// Math.log/sin/cos to each engine, so Box-Muller through them could differ between browsers.

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const TWO_32 = 4294967296;

/** High 32 bits of the 64-bit product of two uint32 (exact: every partial product stays below 2^53). */
function mulhi(a: number, b: number): number {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const m1 = ah * bl;
  const m2 = al * bh;
  const mid = ((al * bl) >>> 16) + (m1 & 0xffff) + (m2 & 0xffff);
  return (ah * bh + Math.floor(m1 / 65536) + Math.floor(m2 / 65536) + Math.floor(mid / 65536)) >>> 0;
}

/** One Philox4x32-10 block (Salmon et al. 2011; Random123's known-answer vectors hold, see rng.test.ts). */
export function philox4x32(counter: readonly [number, number, number, number], key: readonly [number, number], out = new Uint32Array(4)): Uint32Array {
  let [c0, c1, c2, c3] = counter;
  let [k0, k1] = key;
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
}

// ---- deterministic elementary functions (only + - * / on doubles, so identical everywhere) ----

const view = new DataView(new ArrayBuffer(8));
const LN2_HI = 6.93147180369123816490e-1; // ln 2 split so e * LN2_HI is exact for |e| < 2^11
const LN2_LO = 1.90821492927058770002e-10;

/** Natural log of a positive finite double, within about 1 ulp of the true value. */
export function detLog(x: number): number {
  if (!(x > 0) || x === Infinity) return x === 0 ? -Infinity : x === Infinity ? Infinity : NaN;
  let e = 0;
  if (x < 2.2250738585072014e-308) {
    x *= 18014398509481984; // 2^54: lift subnormals into the normal range
    e = -54;
  }
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  e += ((hi >>> 20) & 0x7ff) - 1023;
  view.setUint32(0, (hi & 0x800fffff) | (1023 << 20));
  let m = view.getFloat64(0); // in [1, 2)
  if (m > Math.SQRT2) {
    m /= 2;
    e += 1;
  }
  // log m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716: the series converges to 1e-20 by s^23.
  const s = (m - 1) / (m + 1);
  const z = s * s;
  let p = 1 / 23;
  for (let k = 21; k >= 1; k -= 2) p = p * z + 1 / k;
  return e * LN2_HI + (e * LN2_LO + 2 * s * p);
}

const INV_FACT: number[] = [1];
for (let n = 1; n <= 20; n++) INV_FACT.push(INV_FACT[n - 1]! / n);

/** [cos(2πv), sin(2πv)], accurate to about 1e-16 absolute, for any finite v. */
export function detCosSin2Pi(v: number): [number, number] {
  const x = 4 * (v - Math.floor(v)); // quarter turns in [0, 4)
  const q = Math.round(x);
  const t = (x - q) * (Math.PI / 2); // |t| <= π/4: Taylor to t^18 is within 2e-18
  const t2 = t * t;
  let s = INV_FACT[17]!;
  for (let n = 15; n >= 1; n -= 2) s = -s * t2 + INV_FACT[n]!;
  s *= t;
  let c = INV_FACT[18]!;
  for (let n = 16; n >= 0; n -= 2) c = -c * t2 + INV_FACT[n]!;
  switch (q & 3) {
    case 0:
      return [c, s];
    case 1:
      return [-s, c];
    case 2:
      return [-c, -s];
    default:
      return [s, -c];
  }
}

// ---- the generator ----

/** Counter words [2] that keep the three uses of a key apart. */
const DRAW = 0;
const SPLIT = 1;
const FORK = 2;

function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`A seed must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER} (got ${seed})`);
}

/**
 * A random stream: uniform floats and integers, standard normals, shuffles, and independent child
 * streams. The same seed gives the same numbers on every platform.
 */
export class Rng {
  private k0: number;
  private k1: number;
  /** Blocks drawn so far (the Philox counter); at most 2^53. */
  private block = 0;
  private splits = 0;
  private readonly buf = new Uint32Array(4);
  private pos = 4;
  private spare: number | null = null;

  /** `seed`: a whole number from 0 to 2^53 - 1. */
  constructor(seed: number) {
    checkSeed(seed);
    this.k0 = seed % TWO_32 >>> 0;
    this.k1 = Math.floor(seed / TWO_32) >>> 0;
  }

  private static fromKey(k0: number, k1: number): Rng {
    const r = new Rng(0);
    r.k0 = k0 >>> 0;
    r.k1 = k1 >>> 0;
    return r;
  }

  /** Uniform 32-bit unsigned integer. */
  uint32(): number {
    if (this.pos === 4) {
      philox4x32([this.block % TWO_32 >>> 0, Math.floor(this.block / TWO_32) >>> 0, DRAW, 0], [this.k0, this.k1], this.buf);
      this.block++;
      this.pos = 0;
    }
    return this.buf[this.pos++]!;
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  next(): number {
    const a = this.uint32() >>> 5;
    const b = this.uint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** Uniform float in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [lo, hi), without modulo bias (e.g. `int(0, 1000)` for a timestep). */
  int(lo: number, hi: number): number {
    const n = hi - lo;
    if (!Number.isInteger(lo) || !Number.isInteger(n) || n < 1 || n > TWO_32) throw new RangeError(`int(${lo}, ${hi}): need whole numbers with 1 <= hi - lo <= 2^32`);
    const limit = TWO_32 - (TWO_32 % n); // largest multiple of n that fits; redraw above it
    let u = this.uint32();
    while (u >= limit) u = this.uint32();
    return lo + (u % n);
  }

  /** True with probability p. */
  bernoulli(p: number): boolean {
    return this.next() < p;
  }

  /** Standard normal by Box-Muller (pairs: every second call uses the cached partner). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const u = 1 - this.next(); // (0, 1]: log stays finite
    const r = Math.sqrt(-2 * detLog(u));
    const [c, s] = detCosSin2Pi(this.next());
    this.spare = r * s;
    return r * c;
  }

  /** `n` standard normals as float32. */
  normals(n: number): Float32Array {
    return this.fillNormal(new Float32Array(n));
  }

  /** Fill `out` with standard normals. */
  fillNormal<T extends Float32Array | Float64Array>(out: T): T {
    for (let i = 0; i < out.length; i++) out[i] = this.normal();
    return out;
  }

  /** Fisher-Yates shuffle in place. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(0, i + 1);
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }

  /**
   * The child stream named `label`: a pure function of this stream's key and the label, whatever
   * has been drawn so far. The same label always gives the same stream, so labels must differ
   * where streams should (e.g. `epoch3/batch17/sample2`).
   */
  fork(label: string): Rng {
    const out = new Uint32Array(4);
    let k: [number, number] = [this.k0, this.k1];
    // Absorb the label two UTF-16 units per word, two words per block, chaining the key.
    for (let i = 0; i === 0 || i < label.length; i += 4) {
      const w = (j: number) => ((label.charCodeAt(j) || 0) | ((label.charCodeAt(j + 1) || 0) << 16)) >>> 0;
      philox4x32([w(i), w(i + 2), FORK, label.length], k, out);
      k = [out[0]!, out[1]!];
    }
    return Rng.fromKey(k[0], k[1]);
  }

  /** The next of this stream's numbered children (advances a split counter, not the draws). */
  split(): Rng {
    const out = philox4x32([this.splits % TWO_32 >>> 0, Math.floor(this.splits / TWO_32) >>> 0, SPLIT, 0], [this.k0, this.k1]);
    this.splits++;
    return Rng.fromKey(out[0]!, out[1]!);
  }
}
