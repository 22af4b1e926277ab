// Memory-efficient attention kernels: forward with an online softmax, backward in two passes (dQ; dK and dV).
import { memoSource, type Kernel } from '../kernel.js';
import type { DType } from '../dtype.js';
import { f, input, output } from './wgsl.js';

export interface AttnParams {
  B: number;
  H: number;
  Nq: number;
  Nk: number;
  D: number;
  scale: number;
  causal: boolean;
  dtypes: [DType, DType, DType];
}

/** Rows per workgroup (one thread each). */
export const ROWS = 64;

/** Keys (or queries) staged in workgroup memory per block: two [block, D] tiles within 16 KiB. */
export function blockSize(D: number, extra = 0): number {
  let b = 64;
  while (b > 1 && b * (2 * D + extra) * 4 > 16384) b >>= 1;
  return b;
}

const rowIndex = (p: AttnParams, n: string, N: number) => `((b * ${N}u + ${n}) * ${p.H}u + h) * ${p.D}u`;

/*
 * Forward tiling: a workgroup of 64 threads owns 64 query rows of one (batch, head); each thread
 * keeps its query row and output accumulator in registers. Key/value rows are staged through
 * workgroup memory in blocks sized so both tiles fit 16 KiB (32 rows at D=40, 8 at D=160); for
 * each block a thread computes its scores, rescales its running sum and accumulator once with the
 * new block maximum, then accumulates. Memory is O(rows x D) per workgroup, never Nq x Nk; only
 * the output and the per-row log-sum-exp (for backward) are written.
 */
export const attnForwardSource = memoSource('attn_fwd', (p: AttnParams) => {
  const BK = blockSize(p.D);
  return `${input('q', 0, p.dtypes[0])}
${input('k', 1, p.dtypes[1])}
${input('v', 2, p.dtypes[2])}
${output('o', 3)}
${output('lse', 4)}
var<workgroup> Ks: array<f32, ${BK * p.D}>;
var<workgroup> Vs: array<f32, ${BK * p.D}>;
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z; let h = wid.y;
  let i = wid.x * ${ROWS}u + lid;
  let live = i < ${p.Nq}u;
  var q: array<f32, ${p.D}>;
  var acc: array<f32, ${p.D}>;
  if (live) { for (var d = 0u; d < ${p.D}u; d++) { q[d] = ld_q(${rowIndex(p, 'i', p.Nq)} + d) * ${f(p.scale)}; } }
  var m = -1e30;
  var l = 0.0;
  var kEnd = ${p.Nk}u;
  ${p.causal ? `kEnd = min(${p.Nk}u, wid.x * ${ROWS}u + ${ROWS}u);` : ''}
  for (var j0 = 0u; j0 < kEnd; j0 += ${BK}u) {
    for (var e = lid; e < ${BK * p.D}u; e += ${ROWS}u) {
      let j = j0 + e / ${p.D}u; let d = e % ${p.D}u;
      var kv = 0.0; var vv = 0.0;
      if (j < ${p.Nk}u) { kv = ld_k(${rowIndex(p, 'j', p.Nk)} + d); vv = ld_v(${rowIndex(p, 'j', p.Nk)} + d); }
      Ks[e] = kv; Vs[e] = vv;
    }
    workgroupBarrier();
    var s: array<f32, ${BK}>;
    var mb = m;
    for (var jj = 0u; jj < ${BK}u; jj++) {
      let j = j0 + jj;
      var dot = 0.0;
      for (var d = 0u; d < ${p.D}u; d++) { dot = fma(q[d], Ks[jj * ${p.D}u + d], dot); }
      let ok = j < ${p.Nk}u${p.causal ? ' && j <= i' : ''};
      s[jj] = select(-1e30, dot, ok);
      if (ok) { mb = max(mb, dot); }
    }
    let corr = exp(m - mb);
    l = l * corr;
    for (var d = 0u; d < ${p.D}u; d++) { acc[d] = acc[d] * corr; }
    m = mb;
    for (var jj = 0u; jj < ${BK}u; jj++) {
      let j = j0 + jj;
      let ok = j < ${p.Nk}u${p.causal ? ' && j <= i' : ''};
      let pj = select(0.0, exp(s[jj] - m), ok);
      l += pj;
      for (var d = 0u; d < ${p.D}u; d++) { acc[d] = fma(pj, Vs[jj * ${p.D}u + d], acc[d]); }
    }
    workgroupBarrier();
  }
  if (live) {
    let inv = 1.0 / l;
    for (var d = 0u; d < ${p.D}u; d++) { o[${rowIndex(p, 'i', p.Nq)} + d] = acc[d] * inv; }
    lse[(b * ${p.H}u + h) * ${p.Nq}u + i] = m + log(l);
  }
}`;
});

/* Dvec = rowsum(dO * O), one thread per (batch, head, query) row. */
export const attnDeltaSource = memoSource('attn_delta', (p: AttnParams) => `${input('dout', 0)}
${input('o', 1)}
${output('delta', 2)}
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z; let h = wid.y;
  let i = wid.x * ${ROWS}u + lid;
  if (i >= ${p.Nq}u) { return; }
  var s = 0.0;
  for (var d = 0u; d < ${p.D}u; d++) { let x = ${rowIndex(p, 'i', p.Nq)} + d; s = fma(ld_dout(x), ld_o(x), s); }
  delta[(b * ${p.H}u + h) * ${p.Nq}u + i] = s;
}`);

/*
 * dQ tiling: like the forward, one thread per query row (q, dO and the dQ accumulator in registers),
 * key/value blocks staged in workgroup memory; probabilities are recomputed from the saved
 * log-sum-exp, so no score matrix exists: dQ_i = scale Σ_j P_ij (dO_i·V_j − Δ_i) K_j.
 */
export const attnDqSource = memoSource('attn_dq', (p: AttnParams) => {
  const BK = blockSize(p.D);
  return `${input('q', 0, p.dtypes[0])}
${input('k', 1, p.dtypes[1])}
${input('v', 2, p.dtypes[2])}
${input('dout', 3)}
${input('lse', 4)}
${input('delta', 5)}
${output('dq', 6)}
var<workgroup> Ks: array<f32, ${BK * p.D}>;
var<workgroup> Vs: array<f32, ${BK * p.D}>;
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z; let h = wid.y;
  let i = wid.x * ${ROWS}u + lid;
  let live = i < ${p.Nq}u;
  var q: array<f32, ${p.D}>;
  var go: array<f32, ${p.D}>;
  var acc: array<f32, ${p.D}>;
  var L = 0.0; var dl = 0.0;
  if (live) {
    for (var d = 0u; d < ${p.D}u; d++) { q[d] = ld_q(${rowIndex(p, 'i', p.Nq)} + d) * ${f(p.scale)}; go[d] = ld_dout(${rowIndex(p, 'i', p.Nq)} + d); }
    L = ld_lse((b * ${p.H}u + h) * ${p.Nq}u + i); dl = ld_delta((b * ${p.H}u + h) * ${p.Nq}u + i);
  }
  var kEnd = ${p.Nk}u;
  ${p.causal ? `kEnd = min(${p.Nk}u, wid.x * ${ROWS}u + ${ROWS}u);` : ''}
  for (var j0 = 0u; j0 < kEnd; j0 += ${BK}u) {
    for (var e = lid; e < ${BK * p.D}u; e += ${ROWS}u) {
      let j = j0 + e / ${p.D}u; let d = e % ${p.D}u;
      var kv = 0.0; var vv = 0.0;
      if (j < ${p.Nk}u) { kv = ld_k(${rowIndex(p, 'j', p.Nk)} + d); vv = ld_v(${rowIndex(p, 'j', p.Nk)} + d); }
      Ks[e] = kv; Vs[e] = vv;
    }
    workgroupBarrier();
    for (var jj = 0u; jj < ${BK}u; jj++) {
      let j = j0 + jj;
      if (live && j < ${p.Nk}u${p.causal ? ' && j <= i' : ''}) {
        var s = 0.0; var dp = 0.0;
        for (var d = 0u; d < ${p.D}u; d++) { s = fma(q[d], Ks[jj * ${p.D}u + d], s); dp = fma(go[d], Vs[jj * ${p.D}u + d], dp); }
        let ds = exp(s - L) * (dp - dl) * ${f(p.scale)};
        for (var d = 0u; d < ${p.D}u; d++) { acc[d] = fma(ds, Ks[jj * ${p.D}u + d], acc[d]); }
      }
    }
    workgroupBarrier();
  }
  if (live) { for (var d = 0u; d < ${p.D}u; d++) { dq[${rowIndex(p, 'i', p.Nq)} + d] = acc[d]; } }
}`;
});

/*
 * dK/dV tiling: one thread per key row (its K and V rows and both accumulators in registers);
 * query rows with their dO, log-sum-exp and Δ are staged through workgroup memory block by block:
 * dV_j = Σ_i P_ij dO_i and dK_j = scale Σ_i P_ij (dO_i·V_j − Δ_i) Q_i. No atomics, no score matrix.
 */
export const attnDkvSource = memoSource('attn_dkv', (p: AttnParams) => {
  const BQ = blockSize(p.D, 1);
  return `${input('q', 0, p.dtypes[0])}
${input('k', 1, p.dtypes[1])}
${input('v', 2, p.dtypes[2])}
${input('dout', 3)}
${input('lse', 4)}
${input('delta', 5)}
${output('dk', 6)}
${output('dv', 7)}
var<workgroup> Qs: array<f32, ${BQ * p.D}>;
var<workgroup> Gs: array<f32, ${BQ * p.D}>;
var<workgroup> Ls: array<f32, ${BQ}>;
var<workgroup> Ds: array<f32, ${BQ}>;
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z; let h = wid.y;
  let j = wid.x * ${ROWS}u + lid;
  let live = j < ${p.Nk}u;
  var kr: array<f32, ${p.D}>;
  var vr: array<f32, ${p.D}>;
  var dk_: array<f32, ${p.D}>;
  var dv_: array<f32, ${p.D}>;
  if (live) { for (var d = 0u; d < ${p.D}u; d++) { kr[d] = ld_k(${rowIndex(p, 'j', p.Nk)} + d); vr[d] = ld_v(${rowIndex(p, 'j', p.Nk)} + d); } }
  var iStart = 0u;
  ${p.causal ? `iStart = (wid.x * ${ROWS}u / ${BQ}u) * ${BQ}u;` : ''}
  for (var i0 = iStart; i0 < ${p.Nq}u; i0 += ${BQ}u) {
    for (var e = lid; e < ${BQ * p.D}u; e += ${ROWS}u) {
      let i = i0 + e / ${p.D}u; let d = e % ${p.D}u;
      var qv = 0.0; var gv = 0.0;
      if (i < ${p.Nq}u) { qv = ld_q(${rowIndex(p, 'i', p.Nq)} + d) * ${f(p.scale)}; gv = ld_dout(${rowIndex(p, 'i', p.Nq)} + d); }
      Qs[e] = qv; Gs[e] = gv;
    }
    for (var e = lid; e < ${BQ}u; e += ${ROWS}u) {
      let i = i0 + e;
      var lv = 0.0; var dv = 0.0;
      if (i < ${p.Nq}u) { lv = ld_lse((b * ${p.H}u + h) * ${p.Nq}u + i); dv = ld_delta((b * ${p.H}u + h) * ${p.Nq}u + i); }
      Ls[e] = lv; Ds[e] = dv;
    }
    workgroupBarrier();
    for (var ii = 0u; ii < ${BQ}u; ii++) {
      let i = i0 + ii;
      if (live && i < ${p.Nq}u${p.causal ? ' && j <= i' : ''}) {
        var s = 0.0; var dp = 0.0;
        for (var d = 0u; d < ${p.D}u; d++) { s = fma(Qs[ii * ${p.D}u + d], kr[d], s); dp = fma(Gs[ii * ${p.D}u + d], vr[d], dp); }
        let pr = exp(s - Ls[ii]);
        let ds = pr * (dp - Ds[ii]);
        for (var d = 0u; d < ${p.D}u; d++) {
          dv_[d] = fma(pr, Gs[ii * ${p.D}u + d], dv_[d]);
          dk_[d] = fma(ds, Qs[ii * ${p.D}u + d], dk_[d]);
        }
      }
    }
    workgroupBarrier();
  }
  if (live) {
    for (var d = 0u; d < ${p.D}u; d++) { dk[${rowIndex(p, 'j', p.Nk)} + d] = dk_[d]; dv[${rowIndex(p, 'j', p.Nk)} + d] = dv_[d]; }
  }
}`;
});

/*
 * Naive baseline: one thread per query row, three passes over all keys straight from global memory
 * (max, sum, weighted values; scores recomputed each pass) with no staging or reuse. Only for the benchmark's comparison.
 */
export const attnNaiveSource = memoSource('attn_naive', (p: AttnParams) => `${input('q', 0, p.dtypes[0])}
${input('k', 1, p.dtypes[1])}
${input('v', 2, p.dtypes[2])}
${output('o', 3)}
fn score(b: u32, h: u32, i: u32, j: u32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < ${p.D}u; d++) { s = fma(ld_q(${rowIndex(p, 'i', p.Nq)} + d), ld_k(${rowIndex(p, 'j', p.Nk)} + d), s); }
  return s * ${f(p.scale)};
}
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z; let h = wid.y;
  let i = wid.x * ${ROWS}u + lid;
  if (i >= ${p.Nq}u) { return; }
  let kEnd = ${p.causal ? `min(${p.Nk}u, i + 1u)` : `${p.Nk}u`};
  var m = -1e30;
  for (var j = 0u; j < kEnd; j++) { m = max(m, score(b, h, i, j)); }
  var l = 0.0;
  for (var j = 0u; j < kEnd; j++) { l += exp(score(b, h, i, j) - m); }
  var acc: array<f32, ${p.D}>;
  for (var j = 0u; j < kEnd; j++) {
    let pj = exp(score(b, h, i, j) - m);
    for (var d = 0u; d < ${p.D}u; d++) { acc[d] = fma(pj, ld_v(${rowIndex(p, 'j', p.Nk)} + d), acc[d]); }
  }
  for (var d = 0u; d < ${p.D}u; d++) { o[${rowIndex(p, 'i', p.Nq)} + d] = acc[d] / l; }
}`);

export function attnKernel(name: string, source: () => string, p: AttnParams, rows: number, flops: number, bytes: number): Kernel {
  return { name, source, workgroups: [Math.ceil(rows / ROWS), p.H, p.B], flops, bytes };
}
