// Normalization kernels shared by group norm and layer norm: a tensor seen as rows of E elements,
// each row normalized by its own mean and variance, each element mapped to an affine channel.
import type { DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import type { SubgroupSizes } from '../subgroups.js';
import { ACTIVATIONS } from './elementwise.js';
import { SUBGROUP_BUILTINS, SUBGROUP_ENABLE, subgroupSlots, subgroupTree } from './subgroup.js';
import { input, output, packUniforms, uniformDecl, type UniformField } from './wgsl.js';

/** An activation applied to the normalized, affine output inside the kernel (group norm + SiLU in one pass). */
export type NormActivation = 'silu';

/** A normalization seen as `rows` rows of `E` contiguous elements. */
export interface NormParams {
  rows: number;
  /** Elements per normalized row. */
  E: number;
  eps: number;
  /**
   * Group norm's grouping (G groups of cg channels of S elements; a row is one (n, group)), or null
   * for layer norm, whose element e of a row is channel e.
   */
  group: NormGroups | null;
  /** Storage dtypes of weight and bias, null where absent. */
  w: DType | null;
  b: DType | null;
  /** Activation of the output; absent for none (kept out of the key so plain norms' shaders do not change). */
  act?: NormActivation;
}

/** Group norm's shape: G groups per image, cg channels per group, S elements per channel. */
export interface NormGroups {
  G: number;
  cg: number;
  S: number;
}

/**
 * The same tensor seen as [outer, C, S] (S contiguous elements per channel), for the parameter
 * gradients, which reduce over `outer` and `S` per channel.
 */
export interface NormLayout {
  outer: number;
  C: number;
  S: number;
  /** Statistics rows (for byte counts). */
  rows: number;
  /** Groups per slice (statistics row of channel c in slice o: o·G + c / cg); null for layer norm (row o). */
  group: { G: number; cg: number } | null;
  /**
   * With an activation, the gradient kernels recompute the pre-activation z = x̂·w + b from x and the
   * stats and take dz = dy·act'(z); they then need the weight and bias (storage dtypes, null where absent).
   */
  act?: { fn: NormActivation; w: DType | null; b: DType | null };
}

/** Invocations per workgroup of every norm kernel (the lanes a channel kernel's reduction spans). */
export const NORM_WG = 256;
const WG = NORM_WG;

/** Bindings of weight `w` and bias `bb` from index `i` on (as present), and the next free index. */
function affineInputs(w: DType | null, b: DType | null, i: number): { decls: string[]; next: number } {
  const decls: string[] = [];
  if (w) decls.push(input('w', i++, w));
  if (b) decls.push(input('bb', i++, b));
  return { decls, next: i };
}

/** The affine map of x̂ (WGSL expression `xh`) for channel `c`. */
const affine = (xh: string, w: DType | null, b: DType | null) => `${xh}${w ? ' * ld_w(c)' : ''}${b ? ' + ld_bb(c)' : ''}`;

/**
 * WGSL statement defining `gz`, the gradient at the norm's affine output, from `ld_g(i)` at the
 * activation's output: dy itself, or dy·act'(x̂·w + b) with x̂ = (x[i] − mean)·rstd recomputed.
 */
function preActGrad(act: { fn: NormActivation; w: DType | null; b: DType | null } | undefined, i: string, mean: string, rstd: string): string {
  if (!act) return `let gz = ld_g(${i});`;
  return `let gz = ld_g(${i}) * ${act.fn}_grad(${affine(`(ld_x(${i}) - ${mean}) * ${rstd}`, act.w, act.b)});`;
}

/** Threads sharing one row: a power of two from 32 to 256, about E/4 so each thread reads a few elements. */
export function lanesPerRow(E: number): number {
  let l = 32;
  while (l < WG && l * 4 < E) l *= 2;
  return l;
}

/**
 * The sizes a row kernel reads from uniforms: rows, row length, grouping and eps, so every
 * resolution and channel count with the same lane count shares a pipeline.
 */
const ROW_FIELDS: UniformField[] = [['rows', 'u32'], ['E', 'u32'], ['G', 'u32'], ['cg', 'u32'], ['S', 'u32'], ['eps', 'f32']];

const rowUniforms = (p: NormParams) => packUniforms(ROW_FIELDS, [p.rows, p.E, p.group?.G ?? 1, p.group?.cg ?? 1, p.group?.S ?? 1, p.eps]);

/**
 * What a row kernel's source depends on: lane count, kind, dtypes, activation and the subgroup sizes
 * its reductions start with (absent: workgroup-memory trees only), never sizes.
 */
type RowSourceParams = Pick<NormParams, 'w' | 'b' | 'act'> & { L: number; grouped: boolean; sg?: SubgroupSizes };

const rowSourceParams = (p: NormParams, sg: SubgroupSizes | null): RowSourceParams => ({ L: lanesPerRow(p.E), grouped: !!p.group, w: p.w, b: p.b, ...(p.act ? { act: p.act } : {}), ...(sg ? { sg } : {}) });

/** WGSL expression of element e's affine channel in row r. */
const chanExpr = (p: RowSourceParams) => (p.grouped ? '(r % u.G) * u.cg + e / u.S' : 'e');

/** Rows a workgroup handles, and the workgroup count for `rows` rows. */
function rowTiling(p: NormParams): { L: number; perWg: number; groups: number } {
  const L = lanesPerRow(p.E);
  const perWg = WG / L;
  return { L, perWg, groups: Math.ceil(p.rows / perWg) };
}

/**
 * Entry point of a row kernel: defines lane, head (first lane of this row), r0 (maybe past the end), r
 * and base; with subgroups also sg and sid.
 */
const rowMain = (L: number, sg?: SubgroupSizes) => `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32${sg ? `, ${SUBGROUP_BUILTINS}` : ''}) {
  let lane = lid % ${L}u;
  let head = lid - lane;
  let r0 = (wid.x + wid.y * nwg.x) * ${WG / L}u + lid / ${L}u;
  let r = min(r0, u.rows - 1u);
  let base = r * u.E;`;

/** Tree over the L lanes of each row's slots; `combine` folds slot lid+s into slot lid. Ends on a barrier. */
const laneTree = (L: number, combine: string) => `
  workgroupBarrier();
  for (var s = ${L / 2}u; s > 0u; s >>= 1u) {
    if (lane < s) { ${combine} }
    workgroupBarrier();
  }`;

/** Workgroup slots a row kernel's reduction uses: one per lane, or one per subgroup. */
const slots = (sg?: SubgroupSizes) => (sg ? subgroupSlots(WG, sg) : WG);

/** The slot holding a row's total after the reduction. */
const total = (sg?: SubgroupSizes) => (sg ? 'head / sg' : 'head');

/**
 * Sum each lane's `vars` over its row into the workgroup arrays `arrays` (one each), ending on a
 * barrier with the totals at slot `total(sg)`: by subgroupAdd then a tree over the subgroups'
 * partials, or by a tree over all L lanes.
 */
function rowSums(L: number, sg: SubgroupSizes | undefined, vars: string[], arrays: string[]): string {
  if (!sg) return `${arrays.map((a, i) => `${a}[lid] = ${vars[i]};`).join(' ')}
  ${laneTree(L, arrays.map((a) => `${a}[lid] += ${a}[lid + s];`).join(' '))}`;
  return `${vars.map((v, i) => `let t${i} = subgroupAdd(${v});`).join(' ')}
  if (sid == 0u) { ${arrays.map((a, i) => `${a}[lid / sg] = t${i};`).join(' ')} }
  ${subgroupTree(L, sg, (a, b) => arrays.map((x) => `${x}[${a}] += ${x}[${b}];`).join(' '))}`;
}

/** Chan's merge of the Welford triple in slot b into slot a (workgroup arrays sn, sm, sq). */
const chan = (a: string, b: string) => `let nb = sn[${b}];
      let nt = sn[${a}] + nb;
      let d = sm[${b}] - sm[${a}];
      let fb = select(0.0, nb / nt, nt > 0.0);
      sq[${a}] += sq[${b}] + d * d * sn[${a}] * fb;
      sm[${a}] += d * fb;
      sn[${a}] = nt;`;

/**
 * Merge each lane's Welford (n, m, q) over its row into sn/sm/sq, totals at slot `total(sg)`. In a
 * subgroup: the count and the count-weighted mean by subgroupAdd, then q plus each lane's n·(m − mean)²
 * about that mean (the exact merge, no large-mean cancellation); the subgroups' triples by Chan's tree.
 */
function rowWelford(L: number, sg: SubgroupSizes | undefined): string {
  if (!sg) return `sn[lid] = n; sm[lid] = m; sq[lid] = q;
  ${laneTree(L, chan('lid', 'lid + s'))}`;
  return `let tn = subgroupAdd(n);
  let tm = select(0.0, subgroupAdd(n * m) / tn, tn > 0.0);
  let tq = subgroupAdd(q + n * (m - tm) * (m - tm));
  if (sid == 0u) { sn[lid / sg] = tn; sm[lid / sg] = tm; sq[lid / sg] = tq; }
  ${subgroupTree(L, sg, chan)}`;
}

/*
 * Forward tiling: a 256-thread workgroup handles 256/L rows with L lanes each (L from lanesPerRow:
 * 256 lanes for group norm's long rows, fewer for layer norm's short ones, so no lane idles). Each
 * lane keeps a Welford (count, mean, M2) over its strided elements; the lanes' triples are merged by
 * a tree in workgroup memory (Chan's formula, 3 KiB), so neither a large mean nor a long row cancels.
 * A second strided pass writes the normalized, affine-transformed values. x is read twice, y written
 * once; any row length works in bounded memory, consecutive lanes read consecutive addresses.
 */
export const normForwardSource = memoSource('norm_fwd', (p: RowSourceParams) => {
  const { L } = p;
  const aff = affineInputs(p.w, p.b, 1);
  const decls = [input('x', 0), ...aff.decls, output('y', aff.next), output('stats', aff.next + 1), uniformDecl(aff.next + 2, ROW_FIELDS)];
  return `${p.sg ? SUBGROUP_ENABLE : ''}
${decls.join('\n')}
${p.act ? ACTIVATIONS : ''}
var<workgroup> sn: array<f32, ${slots(p.sg)}>;
var<workgroup> sm: array<f32, ${slots(p.sg)}>;
var<workgroup> sq: array<f32, ${slots(p.sg)}>;
${rowMain(L, p.sg)}
  var n = 0.0;
  var m = 0.0;
  var q = 0.0;
  for (var e = lane; e < u.E; e += ${L}u) {
    let v = ld_x(base + e);
    n += 1.0;
    let d = v - m;
    m += d / n;
    q += d * (v - m);
  }
  ${rowWelford(L, p.sg)}
  let mean = sm[${total(p.sg)}];
  let rstd = inverseSqrt(sq[${total(p.sg)}] / f32(u.E) + u.eps);
  if (r0 >= u.rows) { return; }
  for (var e = lane; e < u.E; e += ${L}u) {
    let c = ${chanExpr(p)};
    var v = (ld_x(base + e) - mean) * rstd;
    ${p.w ? 'v = v * ld_w(c);' : ''}
    ${p.b ? 'v = v + ld_bb(c);' : ''}
    y[base + e] = ${p.act ? `${p.act}(v)` : 'v'};
  }
  if (lane == 0u) { stats[2u * r] = mean; stats[2u * r + 1u] = rstd; }
}`;
});

const paramBytes = (p: NormParams, C: number) => (p.w ? (p.w === 'f16' ? 2 : 4) * C : 0) + (p.b ? (p.b === 'f16' ? 2 : 4) * C : 0);

/**
 * y = act((x − mean)·rstd·w + b) per row (act: identity unless p.act); also writes stats [rows, 2] =
 * (mean, rstd). C: channel count (for bytes); sg: subgroup sizes to reduce with (see `subgroupsFor`).
 */
export function normForwardKernel(name: string, p: NormParams, C: number, sg: SubgroupSizes | null = null): Kernel {
  const n = p.rows * p.E;
  return { name, source: normForwardSource(rowSourceParams(p, sg)), workgroups: grid(rowTiling(p).groups), flops: (p.act ? 14 : 10) * n, bytes: 8 * n + paramBytes(p, C) + 8 * p.rows, uniforms: rowUniforms(p) };
}

/*
 * dX tiling: as the forward (256/L rows per workgroup, L lanes per row). A first strided pass sums
 * dx̂ = gz·w and dx̂·(x − mean) per lane, a tree merges them (2 KiB), and a second pass writes
 * dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂·x̂)). gz is dy, or with an activation dy·act'(z)
 * with z = x̂·w + b recomputed from x and the stats in both passes (no extra dispatch, nothing saved).
 */
export const normDxSource = memoSource('norm_dx', (p: RowSourceParams & { prior?: boolean }) => {
  const { L } = p;
  const act = p.act ? { fn: p.act, w: p.w, b: p.b } : undefined;
  const aff = affineInputs(p.w, act ? p.b : null, 3);
  // A prior gradient of x (another use's, already delivered) is added as dx is written: no separate add.
  const out = aff.next + (p.prior ? 1 : 0);
  const gz = preActGrad(act, 'base + e', 'mean', 'rstd');
  const dh = `gz${p.w ? ' * ld_w(c)' : ''}`;
  return `${p.sg ? SUBGROUP_ENABLE : ''}
${input('x', 0)}
${input('g', 1)}
${input('stats', 2)}
${aff.decls.join('\n')}
${p.prior ? input('prior', aff.next) : ''}
${output('dx', out)}
${uniformDecl(out + 1, ROW_FIELDS)}
${act ? ACTIVATIONS : ''}
var<workgroup> s1: array<f32, ${slots(p.sg)}>;
var<workgroup> s2: array<f32, ${slots(p.sg)}>;
${rowMain(L, p.sg)}
  let mean = ld_stats(2u * r);
  let rstd = ld_stats(2u * r + 1u);
  var a1 = 0.0;
  var a2 = 0.0;
  for (var e = lane; e < u.E; e += ${L}u) {
    let c = ${chanExpr(p)};
    ${gz}
    let dh = ${dh};
    a1 += dh;
    a2 += dh * (ld_x(base + e) - mean);
  }
  ${rowSums(L, p.sg, ['a1', 'a2'], ['s1', 's2'])}
  let m1 = s1[${total(p.sg)}] / f32(u.E);
  let m2 = s2[${total(p.sg)}] * rstd / f32(u.E);
  if (r0 >= u.rows) { return; }
  for (var e = lane; e < u.E; e += ${L}u) {
    let c = ${chanExpr(p)};
    ${gz}
    let dh = ${dh};
    let xh = (ld_x(base + e) - mean) * rstd;
    dx[base + e] = rstd * (dh - m1 - xh * m2)${p.prior ? ' + ld_prior(base + e)' : ''};
  }
}`;
});

/**
 * dx of a norm (through its activation, if any), plus `prior` (bound after the affine inputs) when
 * set: x's gradient from its other uses. C: channel count (for bytes).
 */
export function normDxKernel(p: NormParams, C: number, prior = false, sg: SubgroupSizes | null = null): Kernel {
  const n = p.rows * p.E;
  const act = p.act ? 2 * 8 * n : 0; // recompute z and act'(z) in both passes
  const source = normDxSource({ ...rowSourceParams(p, sg), ...(prior ? { prior } : {}) });
  return { name: 'norm_dx', source, workgroups: grid(rowTiling(p).groups), flops: (prior ? 12 : 11) * n + act, bytes: (prior ? 16 : 12) * n + paramBytes({ ...p, b: p.act ? p.b : null }, C) + 8 * p.rows, uniforms: rowUniforms(p) };
}

/** The sizes the parameter-gradient kernels read from uniforms. */
const DW_FIELDS: UniformField[] = [['outer', 'u32'], ['C', 'u32'], ['S', 'u32'], ['G', 'u32'], ['cg', 'u32'], ['chunks', 'u32'], ['perChunk', 'u32']];

/** What a parameter-gradient source depends on: layer or group norm, the activation recompute, subgroups (channel kernel). */
type DwSourceParams = Pick<NormLayout, 'act'> & { grouped: boolean; sg?: SubgroupSizes };

const dwSourceParams = (p: NormLayout, sg: SubgroupSizes | null = null): DwSourceParams => ({ grouped: !!p.group, ...(p.act ? { act: p.act } : {}), ...(sg ? { sg } : {}) });

/** WGSL expression of the statistics row of channel c in slice o. */
const rowExpr = (p: DwSourceParams) => (p.grouped ? 'o * u.G + c / u.cg' : 'o');

function dwUniforms(p: NormLayout): Uint32Array {
  const { chunks, perChunk } = columnChunks(p);
  return packUniforms(DW_FIELDS, [p.outer, p.C, p.S, p.group?.G ?? 1, p.group?.cg ?? 1, chunks, perChunk]);
}

/** Channels whose S contiguous elements are enough for coalesced loads by one workgroup per channel. */
export const CHANNEL_MAJOR_MIN_S = 32;

/*
 * dweight/dbias with long channel runs (S >= 32, group norm over images): one workgroup per channel,
 * 256 threads striding over that channel's outer·S elements (contiguous runs of S), accumulating
 * dy·x̂ and dy, merged by a tree (2 KiB; with subgroups, subgroupAdd first and a tree over their
 * partials). Writes dw[c] and db[c] directly.
 */
export const normDwChannelSource = memoSource('norm_dw_channel', (p: DwSourceParams) => {
  const aff = affineInputs(p.act?.w ?? null, p.act?.b ?? null, 3);
  const fold = p.sg
    ? `let lane = lid;
  let head = 0u;
  ${rowSums(WG, p.sg, ['a1', 'a2'], ['s1', 's2'])}`
    : `s1[lid] = a1; s2[lid] = a2;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { s1[lid] += s1[lid + s]; s2[lid] += s2[lid + s]; }
    workgroupBarrier();
  }`;
  return `${p.sg ? SUBGROUP_ENABLE : ''}
${input('x', 0)}
${input('g', 1)}
${input('stats', 2)}
${aff.decls.join('\n')}
${output('dw', aff.next)}
${output('db', aff.next + 1)}
${uniformDecl(aff.next + 2, DW_FIELDS)}
${p.act ? ACTIVATIONS : ''}
var<workgroup> s1: array<f32, ${slots(p.sg)}>;
var<workgroup> s2: array<f32, ${slots(p.sg)}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32${p.sg ? `, ${SUBGROUP_BUILTINS}` : ''}) {
  let c = min(wid.x + wid.y * nwg.x, u.C - 1u);
  var a1 = 0.0;
  var a2 = 0.0;
  for (var t = lid; t < u.outer * u.S; t += ${WG}u) {
    let o = t / u.S;
    let i = (o * u.C + c) * u.S + t % u.S;
    let row = ${rowExpr(p)};
    ${dwTerms(p)}
  }
  ${fold}
  if (lid == 0u && wid.x + wid.y * nwg.x < u.C) { dw[c] = s1[0]; db[c] = s2[0]; }
}`;
});

/** Accumulate gz·x̂ into a1 and gz into a2 for element i of channel c in statistics row `row`. */
function dwTerms(p: DwSourceParams): string {
  return `let mean = ld_stats(2u * row);
    let rstd = ld_stats(2u * row + 1u);
    ${preActGrad(p.act, 'i', 'mean', 'rstd')}
    a1 += gz * (ld_x(i) - mean) * rstd;
    a2 += gz;`;
}

/** Extra FLOPs and parameter bytes of the gradient kernels' activation recompute. */
const actCost = (p: NormLayout, n: number) => (p.act ? { flops: 8 * n, bytes: paramBytes({ rows: 0, E: 0, eps: 0, group: null, w: p.act.w, b: p.act.b }, p.C) } : { flops: 0, bytes: 0 });

/** dweight/dbias, one workgroup per channel; sg: subgroup sizes to reduce with (see `subgroupsFor`, 256 lanes). */
export function normDwChannelKernel(p: NormLayout, sg: SubgroupSizes | null = null): Kernel {
  const n = p.outer * p.C * p.S;
  const a = actCost(p, n);
  return { name: 'norm_dw', source: normDwChannelSource(dwSourceParams(p, sg)), workgroups: grid(p.C), flops: 5 * n + a.flops, bytes: 8 * n + 8 * p.rows + 8 * p.C + a.bytes, uniforms: dwUniforms(p) };
}

const COLS = 64;
const ROW_LANES = WG / COLS;

/** Row chunks for the column kernel: enough workgroups to fill a GPU, at most 64 partial rows. */
export function columnChunks(p: NormLayout): { chunks: number; perChunk: number } {
  const perChunk = Math.max(64, Math.ceil(p.outer / 64));
  return { chunks: Math.ceil(p.outer / perChunk), perChunk };
}

/*
 * dweight/dbias with short channel runs (S < 32, layer norm's [rows, C]): the tensor is a matrix
 * [outer, K = C·S]. A workgroup takes 64 adjacent columns (consecutive threads, coalesced) and 4 row
 * lanes over one chunk of at most max(64, outer/64) rows, folds the 4 lanes in workgroup memory and
 * writes partial sums [chunks, K] for dy·x̂ and dy. The caller reduces those over chunks and S
 * (a workspace of at most 64·K floats each).
 */
export const normDwColumnSource = memoSource('norm_dw_column', (p: DwSourceParams) => {
  const aff = affineInputs(p.act?.w ?? null, p.act?.b ?? null, 3);
  return `${input('x', 0)}
${input('g', 1)}
${input('stats', 2)}
${aff.decls.join('\n')}
${output('pw', aff.next)}
${output('pb', aff.next + 1)}
${uniformDecl(aff.next + 2, DW_FIELDS)}
${p.act ? ACTIVATIONS : ''}
var<workgroup> s1: array<f32, ${WG}>;
var<workgroup> s2: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let K = u.C * u.S;
  let tiles = (K + ${COLS - 1}u) / ${COLS}u;
  let w = wid.x + wid.y * nwg.x;
  let chunk = w / tiles;
  let col = (w % tiles) * ${COLS}u + lid % ${COLS}u;
  let live = col < K && chunk < u.chunks;
  let k = min(col, K - 1u);
  let c = k / u.S;
  let end = min((chunk + 1u) * u.perChunk, u.outer);
  var a1 = 0.0;
  var a2 = 0.0;
  for (var o = chunk * u.perChunk + lid / ${COLS}u; o < end; o += ${ROW_LANES}u) {
    let i = o * K + k;
    let row = ${rowExpr(p)};
    ${dwTerms(p)}
  }
  s1[lid] = a1; s2[lid] = a2;
  workgroupBarrier();
  if (lid < ${COLS}u && live) {
    var t1 = 0.0;
    var t2 = 0.0;
    for (var j = 0u; j < ${ROW_LANES}u; j++) { t1 += s1[lid + j * ${COLS}u]; t2 += s2[lid + j * ${COLS}u]; }
    pw[chunk * K + col] = t1;
    pb[chunk * K + col] = t2;
  }
}`;
});

export function normDwColumnKernel(p: NormLayout): Kernel {
  const n = p.outer * p.C * p.S;
  const { chunks } = columnChunks(p);
  const tiles = Math.ceil((p.C * p.S) / COLS);
  const a = actCost(p, n);
  return { name: 'norm_dw', source: normDwColumnSource(dwSourceParams(p)), workgroups: grid(chunks * tiles), flops: 5 * n + a.flops, bytes: 8 * n + 8 * p.rows + 8 * chunks * p.C * p.S + a.bytes, uniforms: dwUniforms(p) };
}
