// Storage dtypes and the f32 <-> f16 packing used for weights stored as half precision.

/** Element types a tensor can be stored as. Compute is always f32. */
export type DType = 'f32' | 'f16';

/** Bytes a tensor of `n` elements occupies; f16 packs two per u32, rounded up to 4 bytes. */
export function storageBytes(n: number, dtype: DType): number {
  return dtype === 'f32' ? n * 4 : Math.ceil(n / 2) * 4;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half bits for a float (round to nearest even, with overflow to inf). */
export function f32ToF16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** Float value of IEEE half bits. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits to float (bf16 is the top half of an f32). */
export function bf16BitsToF32(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

/** Pack floats as f16 pairs into u32 words (low half = even element), the layout `unpack2x16float` reads. */
export function packF16(src: ArrayLike<number>): Uint32Array {
  const out = new Uint32Array(Math.ceil(src.length / 2));
  for (let i = 0; i < src.length; i += 2) {
    const lo = f32ToF16Bits(src[i]!);
    const hi = i + 1 < src.length ? f32ToF16Bits(src[i + 1]!) : 0;
    out[i >> 1] = (lo | (hi << 16)) >>> 0;
  }
  return out;
}

/** Unpack `n` f16 values from u32 words. */
export function unpackF16(words: Uint32Array, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const w = words[i >> 1]!;
    out[i] = f16BitsToF32(i & 1 ? w >>> 16 : w & 0xffff);
  }
  return out;
}

/** Round each value through f16, as storing it would. */
export function roundF16(src: ArrayLike<number>): Float32Array {
  return unpackF16(packF16(src), src.length);
}
