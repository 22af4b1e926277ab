// Normalization kernels shared by group norm and layer norm: a tensor seen as rows of E elements,
// each element mapped to an affine channel by a WGSL expression.
import { grid, memoSource, type Kernel } from '../kernel.js';
import type { DType } from '../dtype.js';
import { f, input, output } from './wgsl.js';

export interface NormParams {
  rows: number;
  /** Elements per normalized row. */
  E: number;
  eps: number;
  /** WGSL expression of the affine channel of element `e` of row `r`. */
  chan: string;
  w: DType | null;
  b: DType | null;
}

const WG = 256;

const reduce = (name: string) => `
  ${name}[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { ${name}[lid] += ${name}[lid + s]; }
    workgroupBarrier();
  }`;

/*
 * Forward tiling: one workgroup of 256 threads per row. Two strided passes (mean, then the
 * centred second moment, so a large mean does not cancel) reduced through workgroup memory, then a
 * third pass writes the normalized, affine-transformed values. Any row length works in bounded memory.
 */
export const normForwardSource = memoSource('norm_fwd', (p: NormParams) => {
  let bi = 1;
  const decls = [input('x', 0)];
  if (p.w) decls.push(input('w', bi++, p.w));
  if (p.b) decls.push(input('bb', bi++, p.b));
  decls.push(output('y', bi++), output('stats', bi++));
  return `${decls.join('\n')}
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x + wid.y * nwg.x;
  let live = r < ${p.rows}u;
  let base = min(r, ${p.rows - 1}u) * ${p.E}u;
  var acc = 0.0;
  for (var e = lid; e < ${p.E}u; e += ${WG}u) { acc += ld_x(base + e); }
  ${reduce('red')}
  let mean = red[0] / ${f(p.E)};
  workgroupBarrier();
  acc = 0.0;
  for (var e = lid; e < ${p.E}u; e += ${WG}u) { let d = ld_x(base + e) - mean; acc += d * d; }
  ${reduce('red')}
  let rstd = inverseSqrt(red[0] / ${f(p.E)} + ${f(p.eps)});
  if (!live) { return; }
  for (var e = lid; e < ${p.E}u; e += ${WG}u) {
    let c = ${p.chan};
    var v = (ld_x(base + e) - mean) * rstd;
    ${p.w ? 'v = v * ld_w(c);' : ''}
    ${p.b ? 'v = v + ld_bb(c);' : ''}
    y[base + e] = v;
  }
  if (lid == 0u) { stats[2u * r] = mean; stats[2u * r + 1u] = rstd; }
}`;
});

export function normForwardKernel(name: string, p: NormParams): Kernel {
  const n = p.rows * p.E;
  return { name, source: normForwardSource(p), workgroups: grid(p.rows), flops: 8 * n, bytes: 4 * 3 * n };
}

/*
 * dX: one workgroup per row; reduces Σ dx̂ and Σ dx̂·x̂ (dx̂ = dy·w), then
 * dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂·x̂)).
 */
export const normDxSource = memoSource('norm_dx', (p: NormParams) => `${input('x', 0)}
${input('g', 1)}
${input('stats', 2)}
${p.w ? input('w', 3, p.w) : ''}
${output('dx', p.w ? 4 : 3)}
var<workgroup> r1: array<f32, ${WG}>;
var<workgroup> r2: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = min(wid.x + wid.y * nwg.x, ${p.rows - 1}u);
  let base = r * ${p.E}u;
  let mean = ld_stats(2u * r);
  let rstd = ld_stats(2u * r + 1u);
  var a1 = 0.0; var a2 = 0.0;
  for (var e = lid; e < ${p.E}u; e += ${WG}u) {
    let c = ${p.chan};
    let dh = ld_g(base + e)${p.w ? ' * ld_w(c)' : ''};
    a1 += dh; a2 += dh * (ld_x(base + e) - mean) * rstd;
  }
  r1[lid] = a1; r2[lid] = a2;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { r1[lid] += r1[lid + s]; r2[lid] += r2[lid + s]; }
    workgroupBarrier();
  }
  let m1 = r1[0] / ${f(p.E)}; let m2 = r2[0] / ${f(p.E)};
  if (wid.x + wid.y * nwg.x >= ${p.rows}u) { return; }
  for (var e = lid; e < ${p.E}u; e += ${WG}u) {
    let c = ${p.chan};
    let dh = ld_g(base + e)${p.w ? ' * ld_w(c)' : ''};
    let xh = (ld_x(base + e) - mean) * rstd;
    dx[base + e] = rstd * (dh - m1 - xh * m2);
  }
}`);

export function normDxKernel(p: NormParams): Kernel {
  const n = p.rows * p.E;
  return { name: 'norm_dx', source: normDxSource(p), workgroups: grid(p.rows), flops: 12 * n, bytes: 4 * 5 * n };
}

export interface NormParamGradParams {
  channels: number;
  /** Elements per channel. */
  count: number;
  /** WGSL: element index of the t-th element of channel c. */
  index: string;
  /** WGSL: the row (statistics index) of that element. */
  row: string;
}

/* dweight and dbias: one workgroup per channel, strided over that channel's elements. */
export const normDwSource = memoSource('norm_dw', (p: NormParamGradParams) => `${input('x', 0)}
${input('g', 1)}
${input('stats', 2)}
${output('dw', 3)}
${output('db', 4)}
var<workgroup> r1: array<f32, ${WG}>;
var<workgroup> r2: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = min(wid.x + wid.y * nwg.x, ${p.channels - 1}u);
  var a1 = 0.0; var a2 = 0.0;
  for (var t = lid; t < ${p.count}u; t += ${WG}u) {
    let i = ${p.index};
    let row = ${p.row};
    let gv = ld_g(i);
    a1 += gv * (ld_x(i) - ld_stats(2u * row)) * ld_stats(2u * row + 1u);
    a2 += gv;
  }
  r1[lid] = a1; r2[lid] = a2;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { r1[lid] += r1[lid + s]; r2[lid] += r2[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u && wid.x + wid.y * nwg.x < ${p.channels}u) { dw[c] = r1[0]; db[c] = r2[0]; }
}`);

export function normDwKernel(p: NormParamGradParams): Kernel {
  const n = p.channels * p.count;
  return { name: 'norm_dw', source: normDwSource(p), workgroups: grid(p.channels), flops: 6 * n, bytes: 4 * 2 * n };
}
