// Dropout's mask kernel: keep or drop from a counter-based hash of (seed, element index), so one seed always replays one mask.
import { storageBytes, type DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import { input, main1d, output, packUniforms, uniformDecl, type UniformField } from './wgsl.js';

export interface DropoutParams {
  n: number;
  p: number;
  dtype: DType;
}

const WG = 256;

/**
 * The mask hash in WGSL: PCG's output permutation (RXS-M-XS) applied to the index, offset by the
 * hashed seed, permuted again. Each step is a bijection of u32, so within one seed no two indices
 * share a hash. `dropoutKeepHost` in the tests is its CPU twin.
 */
export const MASK_HASH = `
fn pcg_(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}
fn mask_hash(seed: u32, i: u32) -> u32 { return pcg_(pcg_(i) + pcg_(seed ^ 0x9e3779b9u)); }`;

/** Element i is kept when mask_hash(seed, i) >= this threshold: probability 1 - p to within 2^-32. */
export function keepThreshold(p: number): number {
  return Math.min(0xffffffff, Math.round(p * 2 ** 32));
}

/** Kept elements are multiplied by this: 1 / (1 - p) rounded to f32, as the kernels hold it. */
export function dropScale(p: number): number {
  return Math.fround(1 / (1 - p));
}

/** Element count, keep threshold and 1 / (1 - p), from uniforms. */
const FIELDS: UniformField[] = [['n', 'u32'], ['threshold', 'u32'], ['scale', 'f32']];

/*
 * One thread per element, in order (coalesced). The seed arrives in a one-word buffer (written on
 * the GPU timeline by the caller) and the sizes and p in uniforms, so every seed, size and rate
 * shares one pipeline per storage dtype.
 */
const dropoutSource = memoSource('dropout', (q: { dtype: DType }) => `${input('x', 0, q.dtype)}
@group(0) @binding(1) var<storage, read> seed: array<u32>;
${output('out', 2)}
${uniformDecl(3, FIELDS)}
${MASK_HASH}
${main1d(WG)}
  if (gi >= u.n) { return; }
  let keep = mask_hash(seed[0], gi) >= u.threshold;
  out[gi] = select(0.0, ld_x(gi) * u.scale, keep);
}`);

/** out = mask(seed) * x / (1 - p); binds x, the seed word, out. */
export function dropoutKernel(q: DropoutParams): Kernel {
  return { name: 'dropout', source: dropoutSource({ dtype: q.dtype }), workgroups: grid(Math.ceil(q.n / WG)), flops: 14 * q.n, bytes: storageBytes(q.n, q.dtype) + 4 * q.n + 4, uniforms: packUniforms(FIELDS, [q.n, keepThreshold(q.p), dropScale(q.p)]) };
}
