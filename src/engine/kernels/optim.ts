// Optimizer kernels over flat parameter arenas: sum of squares (global gradient norm) and fused AdamW.
import { grid, memoSource, type Kernel } from '../kernel.js';
import { output } from './wgsl.js';

const WG = 256;
/** Workgroups of the first norm stage per arena: enough to fill a GPU, few enough for one finishing workgroup. */
export const NORM_PARTIALS = 256;

const treeReduce = `
  part[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }`;

export interface SumSquaresParams {
  /** vec4 words in the flat buffer (arenas pad to 64 elements). */
  n4: number;
  /** Workgroups, at most NORM_PARTIALS. */
  groups: number;
  /** Where this arena's partial sums start in the partials buffer. */
  slot: number;
}

/*
 * Stage 1 of the norm: `groups` workgroups of 256 threads stride over the buffer a vec4 at a time
 * (consecutive threads, consecutive 16-byte words), each thread summing squares in a register;
 * the workgroup folds its 256 sums in workgroup memory and writes one partial.
 */
const sumSquaresSource = memoSource('sum_squares', (p: SumSquaresParams) => `@group(0) @binding(0) var<storage, read> g: array<vec4<f32>>;
${output('partial', 1)}
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = wid.x * ${WG}u + lid; i < ${p.n4}u; i += ${p.groups * WG}u) {
    let v = g[i];
    acc += dot(v, v);
  }${treeReduce}
  if (lid == 0u) { partial[${p.slot}u + wid.x] = part[0]; }
}`);

export function sumSquaresKernel(p: SumSquaresParams): Kernel {
  return { name: 'grad_norm_partial', source: sumSquaresSource(p), workgroups: [p.groups, 1, 1], flops: 8 * p.n4, bytes: 16 * p.n4 + 4 * p.groups };
}

/** Groups for an arena of `n4` vec4 words: about 4 words per thread, at most NORM_PARTIALS. */
export function sumSquaresGroups(n4: number): number {
  return Math.max(1, Math.min(NORM_PARTIALS, Math.ceil(n4 / (4 * WG))));
}

/*
 * Stage 2: one workgroup sums the partials of every arena (constant [start, count) ranges of the
 * partials buffer), folds them in workgroup memory and writes the square root.
 */
const normFinishSource = memoSource('grad_norm_finish', (ranges: [number, number][]) => `@group(0) @binding(0) var<storage, read> partial: array<f32>;
${output('norm', 1)}
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
${ranges.map(([s, c]) => `  if (lid < ${c}u) { acc += partial[${s}u + lid]; }`).join('\n')}${treeReduce}
  if (lid == 0u) { norm[0] = sqrt(part[0]); }
}`);

export function normFinishKernel(ranges: [number, number][]): Kernel {
  const n = ranges.reduce((a, [, c]) => a + c, 0);
  return { name: 'grad_norm_finish', source: normFinishSource(ranges), workgroups: [1, 1, 1], flops: n + 1, bytes: 4 * n + 4 };
}

/** Layout of the AdamW hyperparameter buffer (f32 words), written once per step. */
export const ADAMW_HP = ['decay', 'stepSize', 'beta1', 'beta2', 'eps', 'invBc2', 'maxNorm', 'unused'] as const;

/*
 * Fused AdamW: one thread per vec4 of the flat buffers (grad, param, m, v), all parameters of an
 * arena in one dispatch. Hyperparameters come from an 8-word buffer so a changing learning rate
 * reuses the pipeline; the clip factor min(1, maxNorm / (norm + 1e-6)) is computed on the GPU from
 * the norm tensor. A non-finite norm (exponent bits all ones: tested on the bits, since shader
 * compilers may fold float NaN tests) skips the whole update and raises the flag, which is never
 * cleared here so one flag can serve several arenas.
 */
const adamwSource = memoSource('adamw', (p: { n4: number }) => `@group(0) @binding(0) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> hp: array<f32, 8>;
@group(0) @binding(2) var<storage, read> gnorm: array<f32>;
@group(0) @binding(3) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v: array<vec4<f32>>;
${output('flag', 6)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let gi = (wid.x + wid.y * nwg.x) * ${WG}u + lid;
  let nrm = gnorm[0];
  if ((bitcast<u32>(nrm) & 0x7f800000u) == 0x7f800000u) {
    if (gi == 0u) { flag[0] = 1.0; }
    return;
  }
  if (gi >= ${p.n4}u) { return; }
  let decay = hp[0]; let stepSize = hp[1]; let b1 = hp[2]; let b2 = hp[3];
  let eps = hp[4]; let invBc2 = hp[5]; let maxNorm = hp[6];
  let clip = select(1.0, min(1.0, maxNorm / (nrm + 1e-6)), maxNorm > 0.0);
  let gr = g[gi] * clip;
  let mi = b1 * m[gi] + (1.0 - b1) * gr;
  let vi = b2 * v[gi] + (1.0 - b2) * gr * gr;
  m[gi] = mi;
  v[gi] = vi;
  param[gi] = param[gi] * decay - stepSize * mi / (sqrt(vi * invBc2) + eps);
}`);

/** Binds grad, hp, norm, then param, m, v, flag (read-write). */
export function adamwKernel(n4: number): Kernel {
  return { name: 'adamw', source: adamwSource({ n4 }), workgroups: grid(Math.ceil(n4 / WG)), flops: 4 * 16 * n4, bytes: 16 * 7 * n4 + 4 * 10 };
}
