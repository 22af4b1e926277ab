// Softmax kernels along one axis: forward with a single-exp online max/sum, backward as y * (g - Σ g·y).
import type { DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import type { SubgroupSizes } from '../subgroups.js';
import { SUBGROUP_BUILTINS, SUBGROUP_ENABLE, subgroupSlots, subgroupTree } from './subgroup.js';
import { input, output } from './wgsl.js';

/** A tensor seen as [outer, n, inner], normalized along n. */
export interface SoftmaxParams {
  outer: number;
  /** Length of the softmax axis. */
  n: number;
  /** Product of the dims after the axis (1 for the last axis: contiguous rows). */
  inner: number;
  dtype: DType;
  /** Subgroup sizes the row's max and sum start with (see `softmaxLanes`); absent: workgroup-memory trees only. */
  sg?: SubgroupSizes;
}

/** Threads per row: enough to cover a row in a few strides, never more than the row needs. */
export function softmaxLanes(n: number): number {
  return n >= 2048 ? 256 : n >= 256 ? 128 : 64;
}

const rows = (p: SoftmaxParams) => p.outer * p.inner;

/** WGSL that maps the row id `r` to `base`, the offset of its first element (elements are `inner` apart). */
const rowBase = (p: SoftmaxParams) =>
  `let rr = min(r, ${rows(p) - 1}u);
  let base = (rr / ${p.inner}u) * ${p.n * p.inner}u + rr % ${p.inner}u;`;

/** Merge the per-thread partials by a tree in workgroup memory; `combine` folds slot lid+s into slot lid. */
const tree = (wg: number, combine: string) => `
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { ${combine} }
    workgroupBarrier();
  }`;

/** Workgroup slots for `wg` partials: one per thread, or one per subgroup. */
const slots = (wg: number, sg?: SubgroupSizes) => (sg ? subgroupSlots(wg, sg) : wg);

/** Entry point of a row kernel with `wg` threads (and the subgroup builtins where used). */
const rowMain = (wg: number, sg?: SubgroupSizes) => `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32${sg ? `, ${SUBGROUP_BUILTINS}` : ''}) {`;

/** Fold slot b's (max, sum) pair into slot a's, rescaling both sums to the larger max. */
const maxSum = (a: string, b: string) => `let ma = rm[${a}]; let mb = rm[${b}]; let mx = max(ma, mb);
      rl[${a}] = rl[${a}] * exp(ma - mx) + rl[${b}] * exp(mb - mx); rm[${a}] = mx;`;

/** Merge the threads' running (m, l) into rm[0], rl[0]: subgroupMax/subgroupAdd, then the subgroups' pairs. */
function mergeMaxSum(wg: number, sg?: SubgroupSizes): string {
  if (!sg) return `rm[lid] = m;
  rl[lid] = l;
  workgroupBarrier();
  ${tree(wg, maxSum('lid', 'lid + s'))}`;
  return `let lane = lid;
  let head = 0u;
  let gm = subgroupMax(m);
  let gl = subgroupAdd(l * exp(m - gm));
  if (sid == 0u) { rm[lid / sg] = gm; rl[lid / sg] = gl; }
  ${subgroupTree(wg, sg, maxSum)}`;
}

/** Sum the threads' `acc` into red[0]: subgroupAdd, then the subgroups' partials; or a tree over all threads. */
function mergeSum(wg: number, sg?: SubgroupSizes): string {
  if (!sg) return `red[lid] = acc;
  workgroupBarrier();
  ${tree(wg, 'red[lid] += red[lid + s];')}`;
  return `let lane = lid;
  let head = 0u;
  let t = subgroupAdd(acc);
  if (sid == 0u) { red[lid / sg] = t; }
  ${subgroupTree(wg, sg, (a, b) => `red[${a}] += red[${b}];`)}`;
}

/*
 * Forward tiling: one workgroup per row (2-D grid, so any number of rows). Each thread strides over
 * the row keeping a running (max, sum) pair, updated with one exp per element: the smaller of the
 * two values is rescaled by exp(-|x - m|). The pairs are merged by a tree in workgroup memory
 * (2 x threads floats), then a second strided pass writes exp(x - max) / sum. Rows along the last
 * axis are read contiguously by consecutive threads; other axes are read `inner` apart.
 */
const softmaxSource = memoSource('softmax_fwd', (p: SoftmaxParams) => {
  const wg = softmaxLanes(p.n);
  const at = `base + e * ${p.inner}u`;
  return `${p.sg ? SUBGROUP_ENABLE : ''}
${input('x', 0, p.dtype)}
${output('y', 1)}
var<workgroup> rm: array<f32, ${slots(wg, p.sg)}>;
var<workgroup> rl: array<f32, ${slots(wg, p.sg)}>;
${rowMain(wg, p.sg)}
  let r = wid.x + wid.y * nwg.x;
  ${rowBase(p)}
  var m = -3.0e38;
  var l = 0.0;
  for (var e = lid; e < ${p.n}u; e += ${wg}u) {
    let x = ld_x(${at});
    let d = exp(-abs(x - m));
    if (x > m) { l = l * d + 1.0; m = x; } else { l += d; }
  }
  ${mergeMaxSum(wg, p.sg)}
  let mx = rm[0];
  let inv = 1.0 / rl[0];
  if (r >= ${rows(p)}u) { return; }
  for (var e = lid; e < ${p.n}u; e += ${wg}u) { y[${at}] = exp(ld_x(${at}) - mx) * inv; }
}`;
});

/*
 * Backward tiling: one workgroup per row, as the forward. A strided pass accumulates Σ g·y per
 * thread, a tree in workgroup memory (threads floats) sums the row, and a second strided pass
 * writes dx = y (g - Σ g·y).
 */
const softmaxBackwardSource = memoSource('softmax_bwd', (p: SoftmaxParams) => {
  const wg = softmaxLanes(p.n);
  const at = `base + e * ${p.inner}u`;
  return `${p.sg ? SUBGROUP_ENABLE : ''}
${input('y', 0)}
${input('g', 1)}
${output('dx', 2)}
var<workgroup> red: array<f32, ${slots(wg, p.sg)}>;
${rowMain(wg, p.sg)}
  let r = wid.x + wid.y * nwg.x;
  ${rowBase(p)}
  var acc = 0.0;
  for (var e = lid; e < ${p.n}u; e += ${wg}u) { acc = fma(ld_g(${at}), ld_y(${at}), acc); }
  ${mergeSum(wg, p.sg)}
  let dot = red[0];
  if (r >= ${rows(p)}u) { return; }
  for (var e = lid; e < ${p.n}u; e += ${wg}u) { dx[${at}] = ld_y(${at}) * (ld_g(${at}) - dot); }
}`;
});

const inBytes = (n: number, dtype: DType) => (dtype === 'f16' ? 2 : 4) * n;

/** Softmax of x along the axis: binds x, then y. */
export function softmaxKernel(p: SoftmaxParams): Kernel {
  const n = rows(p) * p.n;
  // Per element: compare, |x - m|, exp, multiply-add for the running sum; then subtract, exp, scale.
  return { name: 'softmax', source: softmaxSource(p), workgroups: grid(rows(p)), flops: 8 * n, bytes: inBytes(n, p.dtype) + 4 * n };
}

/** dx = y (g - Σ g·y) along the axis: binds y, g, then dx. */
export function softmaxBackwardKernel(p: SoftmaxParams): Kernel {
  const n = rows(p) * p.n;
  return { name: 'softmax_grad', source: softmaxBackwardSource(p), workgroups: grid(rows(p)), flops: 4 * n, bytes: 12 * n };
}
