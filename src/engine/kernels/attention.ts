// Memory-efficient attention kernels: forward with an online softmax, backward in one dispatch (dQ and dK, dV by workgroup ranges).
import { grid, memoSource, type Kernel } from '../kernel.js';
import type { DType } from '../dtype.js';
import { f, input, main1d, output, packUniforms, uniformDecl, type UniformField } from './wgsl.js';

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

/** Threads per workgroup (one row each up to D = 64, a slice of a row above). */
export const THREADS = 64;

/** Feature vectors per row: head features are handled as vec4s, the last one zero-padded. */
const vecs = (D: number) => Math.ceil(D / 4);

/** Most vec4 registers a thread holds per row variable (D = 64 in one thread; the unrolled code compiles fast everywhere). */
const SLICE_MAX_VECS = 16;

/**
 * How head rows are split across threads: `T` threads share a row, each holding `W` of its vec4s
 * in named registers (T = 1 up to D = 64, 2 at D = 80, 4 at D = 160, 8 at D = 512), so no kernel
 * needs a per-thread array. A workgroup owns `rows` = 64 / T rows; `Vp` = T·W vec4s is the row
 * width staged in workgroup memory, zero past D.
 */
export interface Split {
  T: number;
  W: number;
  rows: number;
  Vp: number;
}

/** The split of head dim `D` (see `Split`). */
export function split(D: number): Split {
  const V = vecs(D);
  let T = 1;
  while (Math.ceil(V / T) > SLICE_MAX_VECS) T *= 2;
  const W = Math.ceil(V / T);
  return { T, W, rows: THREADS / T, Vp: T * W };
}

/**
 * Rows staged in workgroup memory per block: two [block, Vp] vec4 tiles plus `extra` floats a row,
 * within 16 KiB: 64 rows up to D=32, 32 up to D=64; with a split row's partial dots (one per
 * thread per dot) 16 at D=80 in the forward and 8 in backward's two-dot kernels, 8 at D=160, 2 at D=512.
 */
export function blockSize(D: number, extra = 0): number {
  let b = 64;
  while (b > 1 && b * (8 * split(D).Vp + extra) * 4 > 16384) b >>= 1;
  return b;
}

/** Floats a staged row needs for the partial dots of split rows: one per dot per thread. */
const partialFloats = (sp: Split, dots: number) => (sp.T > 1 ? dots * THREADS : 0);

/** Largest head dimension the kernels take (SD's VAE mid-block attention is one 512-wide head). */
export const MAX_HEAD_DIM = 512;

/**
 * What an attention source depends on: the head dim (register count, split, block size), the mask
 * and the dtypes. Batch, heads, sequence lengths and the scale are uniforms, so every resolution and
 * every prompt length of one head dim shares the pipelines.
 */
export type AttnSourceParams = Pick<AttnParams, 'D' | 'causal' | 'dtypes'>;

/** The uniform struct every attention kernel reads: heads, query and key counts, scale. */
const ATTN_FIELDS: UniformField[] = [['H', 'u32'], ['Nq', 'u32'], ['Nk', 'u32'], ['scale', 'f32']];

/** The source-relevant part of `p` (memo key of the generators). */
export const sourceParams = (p: AttnParams): AttnSourceParams => ({ D: p.D, causal: p.causal, dtypes: p.dtypes });

/** Element offset of row `n` of a [B, N, H·D] tensor for batch `b`, head `h`; `N` is a uniform name. */
const rowIndex = (p: AttnSourceParams, n: string, N: 'Nq' | 'Nk') => `((b * u.${N} + ${n}) * u.H + h) * ${p.D}u`;

/**
 * A thread's vec4 slice of its row's state, unrolled into named variables (they stay in registers
 * on every compiler, including SwiftShader's; a private array made lavapipe's compiler stall).
 */
class Regs {
  constructor(readonly sp: Split) {}
  decl(...names: string[]): string {
    return names.map((n) => Array.from({ length: this.sp.W }, (_, c) => `var ${n}_${c} = vec4<f32>(0.0);`).join(' ')).join('\n  ');
  }
  /** Repeat `body` for each vec4 of the slice; `at(name)` names the register, `c` is the row's vec4 index (from `c0`, the slice's first, when split). */
  each(body: (at: (name: string) => string, c: string) => string): string {
    return Array.from({ length: this.sp.W }, (_, c) => body((n) => `${n}_${c}`, this.sp.T === 1 ? `${c}u` : `c0 + ${c}u`)).join(' ');
  }
}

/**
 * WGSL declarations of the thread's place: its slice `sl` of row `ri` in the workgroup's rows, the
 * slice's first vec4 `c0`, and the global row `row` (wid.x picks the workgroup's block of rows).
 */
function threadPlace(sp: Split, row: string): string {
  if (sp.T === 1) return `let ${row} = wid.x * ${THREADS}u + lid;`;
  return `let sl = lid / ${sp.rows}u; let ri = lid % ${sp.rows}u; let c0 = sl * ${sp.W}u;
  let ${row} = wid.x * ${sp.rows}u + ri;`;
}

/**
 * The dot products of the thread's register slices with row `idx` of staged tiles (`[name,
 * register, tile]`, each `let name` for the body). One thread holding the whole row computes them
 * inline. A split row's T threads each write their slice's partial sums for all `nb` staged rows
 * to `Pd` first (`pre`, ending in a barrier); then every thread of the row adds the row's T
 * partials in the same order, so all of them hold the same value.
 */
function dots(sp: Split, R: Regs, idx: string, list: [string, string, string][], block: number): { pre: string; lets: string } {
  const acc = `${list.map(([n]) => `var ${n}4 = vec4<f32>(0.0);`).join(' ')}
        ${R.each((at, c) => list.map(([n, reg, tile]) => `${n}4 = fma(${at(reg)}, ${tile}[${idx} * ${sp.Vp}u + ${c}], ${n}4);`).join(' '))}`;
  const sum = (n: string) => `${n}4.x + ${n}4.y + ${n}4.z + ${n}4.w`;
  if (sp.T === 1) return { pre: '', lets: `${acc}\n        ${list.map(([n]) => `let ${n} = ${sum(n)};`).join(' ')}` };
  const at = (x: number, s: string) => `Pd[${x * THREADS * block ? `${x * THREADS * block}u + ` : ''}${idx} * ${THREADS}u + ${s} * ${sp.rows}u + ri]`;
  return {
    pre: `for (var ${idx} = 0u; ${idx} < nb; ${idx}++) {
      ${acc}
      ${list.map(([n], x) => `${at(x, 'sl')} = ${sum(n)};`).join(' ')}
    }
    workgroupBarrier();`,
    lets: list.map(([n], x) => `let ${n} = ${Array.from({ length: sp.T }, (_, s) => at(x, `${s}u`)).join(' + ')};`).join('\n        '),
  };
}

/** The workgroup array of partial dots `dots` uses for split rows (`block` rows staged at a time), else ''. */
const partialDecl = (sp: Split, nDots: number, block: number) => (sp.T === 1 ? '' : `var<workgroup> Pd: array<f32, ${nDots * THREADS * block}>;`);

/** WGSL `ld4_<name>(row, c)`: features 4c..4c+3 of the head row starting at element `row`, zero past D (`Vp` vec4s may pass it). */
function load4(name: string, D: number, Vp: number): string {
  const exact = D % 4 === 0 && Vp * 4 === D;
  const comp = (t: number) => (exact ? `ld_${name}(row + c * 4u + ${t}u)` : `select(0.0, ld_${name}(row + min(c * 4u + ${t}u, ${D - 1}u)), c * 4u + ${t}u < ${D}u)`);
  return `fn ld4_${name}(row: u32, c: u32) -> vec4<f32> { return vec4<f32>(${[0, 1, 2, 3].map(comp).join(', ')}); }`;
}

/** WGSL `st4_<name>(row, c, v)`: store the features of `v` that exist (D need not be a multiple of 4). */
function store4(name: string, D: number): string {
  return `fn st4_${name}(row: u32, c: u32, v: vec4<f32>) {
  for (var t = 0u; t < 4u; t++) { if (c * 4u + t < ${D}u) { ${name}[row + c * 4u + t] = v[t]; } }
}`;
}

/** WGSL statements staging `rows` rows from `first` of each tensor into `vec4` tiles (zeros past `N`); the first tile scaled by `u.scale` when `scaleFirst`. */
function stage(p: AttnSourceParams, rows: number, first: string, N: 'Nq' | 'Nk', tiles: [string, string][], scaleFirst = false): string {
  const V = split(p.D).Vp;
  const loads = tiles.map(([tile, src], t) => `${tile}[e] = select(vec4<f32>(0.0), ld4_${src}(${rowIndex(p, 'r', N)}, c)${t === 0 && scaleFirst ? ' * u.scale' : ''}, ok);`);
  return `for (var e = lid; e < ${rows * V}u; e += ${THREADS}u) {
      let r = min(${first} + e / ${V}u, u.${N} - 1u); let c = e % ${V}u; let ok = ${first} + e / ${V}u < u.${N};
      ${loads.join('\n      ')}
    }`;
}

/*
 * Forward tiling: a workgroup of 64 threads owns 64 query rows of one (batch, head) up to D = 64,
 * each thread keeping its query row and output accumulator in registers as vec4s (D padded to a
 * multiple of 4); above D = 64 each row is split over T threads (`split`), each with its slice of
 * q and acc, and the workgroup owns 64/T rows. Key/value rows are staged through workgroup memory
 * in blocks sized so both tiles (and a split row's partial dots) fit 16 KiB (32 rows at D=40, 16
 * at D=80, 8 at D=160); every thread reads the same tile word at once (a broadcast), 4 features
 * per load. Each key is folded into an online softmax as it comes: the running sum and accumulator
 * are rescaled only when the key raises the row maximum (rare after the first keys), so no
 * per-thread score array exists (a private `array<f32, 32>` stalled lavapipe's compiler for
 * minutes). A split row's threads meet once per block in workgroup memory to add their partial
 * dots (`dots`). Memory is O(rows x D) per workgroup, never Nq x Nk; only the output and the
 * per-row log-sum-exp (for backward) are written. Tiles stay f32 with shader-f16 too: f16 tiles
 * (twice the keys a block) measured no faster on lavapipe, 1.01x the f32 time at 8x1024x40 and
 * 1.09x at 8x1024x80 (f16 products as well: 1.00x at D=40).
 */
export const attnForwardSource = memoSource('attn_fwd', (p: AttnSourceParams) => {
  const sp = split(p.D);
  const BK = blockSize(p.D, partialFloats(sp, 1));
  const R = new Regs(sp);
  const d = dots(sp, R, 'jj', [['dot', 'q', 'Ks']], BK);
  return `${input('q', 0, p.dtypes[0])}
${input('k', 1, p.dtypes[1])}
${input('v', 2, p.dtypes[2])}
${output('o', 3)}
${output('lse', 4)}
${uniformDecl(5, ATTN_FIELDS)}
${load4('q', p.D, sp.Vp)}
${load4('k', p.D, sp.Vp)}
${load4('v', p.D, sp.Vp)}
${store4('o', p.D)}
var<workgroup> Ks: array<vec4<f32>, ${BK * sp.Vp}>;
var<workgroup> Vs: array<vec4<f32>, ${BK * sp.Vp}>;
${partialDecl(sp, 1, BK)}
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z; let h = wid.y;
  ${threadPlace(sp, 'i')}
  let live = i < u.Nq;
  let qrow = ${rowIndex(p, 'min(i, u.Nq - 1u)', 'Nq')};
  ${R.decl('q', 'acc')}
  ${R.each((r, c) => `${r('q')} = ld4_q(qrow, ${c}) * u.scale;`)}
  var m = -1e30;
  var l = 0.0;
  let kEnd = ${p.causal ? `min(u.Nk, wid.x * ${sp.rows}u + ${sp.rows}u)` : 'u.Nk'};
  for (var j0 = 0u; j0 < kEnd; j0 += ${BK}u) {
    ${stage(p, BK, 'j0', 'Nk', [['Ks', 'k'], ['Vs', 'v']])}
    workgroupBarrier();
    // a run-time trip count: a constant one is fully unrolled by LLVM (lavapipe), minutes of compile
    let nb = min(${BK}u, kEnd - j0);
    ${d.pre}
    for (var jj = 0u; jj < nb; jj++) {
      let j = j0 + jj;
      if (${p.causal ? 'j <= i' : 'true'}) {
        ${d.lets}
        if (dot > m) {
          let corr = exp(m - dot);
          l = l * corr;
          ${R.each((r) => `${r('acc')} = ${r('acc')} * corr;`)}
          m = dot;
        }
        let pj = exp(dot - m);
        l += pj;
        let p4 = vec4<f32>(pj);
        ${R.each((r, c) => `${r('acc')} = fma(p4, Vs[jj * ${sp.Vp}u + ${c}], ${r('acc')});`)}
      }
    }
    workgroupBarrier();
  }
  if (live) {
    let inv = 1.0 / l;
    ${R.each((r, c) => `st4_o(qrow, ${c}, ${r('acc')} * inv);`)}
    ${sp.T > 1 ? 'if (sl == 0u) { ' : ''}lse[(b * u.H + h) * u.Nq + i] = m + log(l);${sp.T > 1 ? ' }' : ''}
  }
}`;
});

/** WGSL statements summing Δ = rowsum(dO ∘ O) of the head row starting at element `row` into `v` (a sequential fma over the D features). */
const deltaSum = (p: AttnSourceParams, v: string, row: string) =>
  `var ${v} = 0.0;
  for (var d = 0u; d < ${p.D}u; d++) { let x = ${row} + d; ${v} = fma(ld_dout(x), ld_o(x), ${v}); }`;

/** The uniforms of the backward kernel: the forward's, and how many of its workgroups compute dQ (the rest dK and dV). */
const BWD_FIELDS: UniformField[] = [...ATTN_FIELDS, ['qGroups', 'u32']];

/** Rows staged per block in both halves of the backward kernel: query rows with their dO, log-sum-exp and Δ (the larger need), or key/value rows. */
const bwdBlock = (D: number) => blockSize(D, 2 + partialFloats(split(D), 2));

/*
 * dQ part: like the forward, one thread per query row (q, dO and the dQ accumulator in registers
 * as vec4s), or T threads per row with a slice each above D = 64; key/value blocks staged in
 * workgroup memory (S1, S2); probabilities are recomputed from the saved log-sum-exp, so no score
 * matrix exists: dQ_i = scale Σ_j P_ij (dO_i·V_j − Δ_i) K_j, with Δ_i = dO_i·O_i summed by the
 * row's thread first. `wx` is the workgroup's block of query rows.
 */
function dqPart(p: AttnSourceParams): string {
  const sp = split(p.D);
  const BK = bwdBlock(p.D);
  const R = new Regs(sp);
  const d = dots(sp, R, 'jj', [['s', 'q', 'S1'], ['dp', 'go', 'S2']], BK);
  return `fn dq_part(wx: u32, b: u32, h: u32, lid: u32) {
  ${threadPlace(sp, 'i').replaceAll('wid.x', 'wx')}
  let live = i < u.Nq;
  let ic = min(i, u.Nq - 1u);
  let qrow = ${rowIndex(p, 'ic', 'Nq')};
  ${R.decl('q', 'go', 'acc')}
  ${R.each((r, c) => `${r('q')} = ld4_q(qrow, ${c}) * u.scale; ${r('go')} = ld4_dout(qrow, ${c});`)}
  let L = ld_lse((b * u.H + h) * u.Nq + ic);
  ${deltaSum(p, 'dl', 'qrow')}
  let kEnd = ${p.causal ? `min(u.Nk, wx * ${sp.rows}u + ${sp.rows}u)` : 'u.Nk'};
  for (var j0 = 0u; j0 < kEnd; j0 += ${BK}u) {
    ${stage(p, BK, 'j0', 'Nk', [['S1', 'k'], ['S2', 'v']])}
    workgroupBarrier();
    let nb = min(${BK}u, kEnd - j0);
    ${d.pre}
    for (var jj = 0u; jj < nb; jj++) {
      let j = j0 + jj;
      if (${p.causal ? 'j <= i' : 'true'}) {
        ${d.lets}
        let ds = vec4<f32>(exp(s - L) * (dp - dl) * u.scale);
        ${R.each((r, c) => `${r('acc')} = fma(ds, S1[jj * ${sp.Vp}u + ${c}], ${r('acc')});`)}
      }
    }
    workgroupBarrier();
  }
  if (live) { ${R.each((r, c) => `st4_dq(qrow, ${c}, ${r('acc')});`)} }
}`;
}

/*
 * dK/dV part: one thread per key row (its K and V rows and both accumulators in registers as
 * vec4s), or T threads per row with a slice each above D = 64; query rows with their dO,
 * log-sum-exp and Δ (summed as they are staged, as the dQ part sums it) are staged through
 * workgroup memory block by block: dV_j = Σ_i P_ij dO_i and dK_j = scale Σ_i P_ij (dO_i·V_j − Δ_i) Q_i.
 * No atomics, no score matrix. `wx` is the workgroup's block of key rows.
 */
function dkvPart(p: AttnSourceParams): string {
  const sp = split(p.D);
  const BQ = bwdBlock(p.D);
  const R = new Regs(sp);
  const d = dots(sp, R, 'ii', [['s', 'kr', 'S1'], ['dp', 'vr', 'S2']], BQ);
  return `fn dkv_part(wx: u32, b: u32, h: u32, lid: u32) {
  ${threadPlace(sp, 'j').replaceAll('wid.x', 'wx')}
  let live = j < u.Nk;
  let krow = ${rowIndex(p, 'min(j, u.Nk - 1u)', 'Nk')};
  ${R.decl('kr', 'vr', 'dk_', 'dv_')}
  ${R.each((r, c) => `${r('kr')} = ld4_k(krow, ${c}); ${r('vr')} = ld4_v(krow, ${c});`)}
  let iStart = ${p.causal ? `(wx * ${sp.rows}u / ${BQ}u) * ${BQ}u` : '0u'};
  for (var i0 = iStart; i0 < u.Nq; i0 += ${BQ}u) {
    ${stage(p, BQ, 'i0', 'Nq', [['S1', 'q'], ['S2', 'dout']], true)}
    for (var e = lid; e < ${BQ}u; e += ${THREADS}u) {
      let i = min(i0 + e, u.Nq - 1u);
      Ls[e] = ld_lse((b * u.H + h) * u.Nq + i);
      ${deltaSum(p, 'dl', rowIndex(p, 'i', 'Nq'))}
      Ds[e] = dl;
    }
    workgroupBarrier();
    let nb = min(${BQ}u, u.Nq - i0);
    ${d.pre}
    for (var ii = 0u; ii < nb; ii++) {
      let i = i0 + ii;
      if (live${p.causal ? ' && j <= i' : ''}) {
        ${d.lets}
        let pr = vec4<f32>(exp(s - Ls[ii]));
        let ds = pr * (dp - Ds[ii]);
        ${R.each((r, c) => `${r('dv_')} = fma(pr, S2[ii * ${sp.Vp}u + ${c}], ${r('dv_')}); ${r('dk_')} = fma(ds, S1[ii * ${sp.Vp}u + ${c}], ${r('dk_')});`)}
      }
    }
    workgroupBarrier();
  }
  if (live) {
    ${R.each((r, c) => `st4_dk(krow, ${c}, ${r('dk_')}); st4_dv(krow, ${c}, ${r('dv_')});`)}
  }
}`;
}

/**
 * Which parts of the backward one dispatch runs: both (9 storage bindings: q, k, v, dO, lse, O,
 * dQ, dK, dV), or, on a device that binds fewer (WebGPU's default is 8), dQ alone (7) and dK, dV
 * alone (8) as two dispatches of the same part functions, so the gradients are the same bit for bit.
 */
export type BwdParts = 'both' | 'dq' | 'dkv';

/** Storage buffers the one-dispatch backward binds; a device with fewer takes the two-dispatch form. */
export const BWD_BINDINGS = 9;

/** The outputs a backward source of `parts` binds, in binding order after the six inputs. */
const bwdOutputs = (parts: BwdParts) => (parts === 'both' ? ['dq', 'dk', 'dv'] : parts === 'dq' ? ['dq'] : ['dk', 'dv']);

/** The entry point's call: by workgroup range for both parts, else the one part over the whole grid. */
const bwdCall = (parts: BwdParts) =>
  parts === 'both'
    ? 'if (wid.x < u.qGroups) { dq_part(wid.x, wid.z, wid.y, lid); } else { dkv_part(wid.x - u.qGroups, wid.z, wid.y, lid); }'
    : `${parts === 'dq' ? 'dq_part' : 'dkv_part'}(wid.x, wid.z, wid.y, lid);`;

/*
 * The whole backward in one dispatch: workgroups [0, qGroups) run the dQ part over blocks of
 * query rows, the rest the dK/dV part over blocks of key rows (the branch is on the workgroup
 * number, uniform across a workgroup, so the barriers inside stay in uniform control flow). Both
 * parts stage `bwdBlock` rows at a time into the same workgroup arrays (S1, S2 and the split
 * rows' partial dots; the dK/dV part also Ls and Ds), so the module needs no more workgroup memory
 * than the dK/dV part alone. Neither part reads the other's output: each sums Δ itself, the same
 * sequential fma over the row, so Δ costs no dispatch and no buffer. qGroups is 0 when dQ is not
 * needed, and the grid holds no dK/dV groups when they are not. With `parts` 'dq' or 'dkv' the
 * module holds one part only (`BwdParts`).
 */
export const attnBackwardSource = memoSource('attn_bwd', (p: AttnSourceParams & { parts?: BwdParts }) => {
  const sp = split(p.D);
  const BQ = bwdBlock(p.D);
  const parts = p.parts ?? 'both';
  const outs = bwdOutputs(parts);
  return `${input('q', 0, p.dtypes[0])}
${input('k', 1, p.dtypes[1])}
${input('v', 2, p.dtypes[2])}
${input('dout', 3)}
${input('lse', 4)}
${input('o', 5)}
${outs.map((o, i) => output(o, 6 + i)).join('\n')}
${uniformDecl(6 + outs.length, BWD_FIELDS)}
${load4('q', p.D, sp.Vp)}
${load4('k', p.D, sp.Vp)}
${load4('v', p.D, sp.Vp)}
${load4('dout', p.D, sp.Vp)}
${outs.map((o) => store4(o, p.D)).join('\n')}
var<workgroup> S1: array<vec4<f32>, ${BQ * sp.Vp}>;
var<workgroup> S2: array<vec4<f32>, ${BQ * sp.Vp}>;
var<workgroup> Ls: array<f32, ${BQ}>;
var<workgroup> Ds: array<f32, ${BQ}>;
${partialDecl(sp, 2, BQ)}
${parts !== 'dkv' ? dqPart(p) : ''}
${parts !== 'dq' ? dkvPart(p) : ''}
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${bwdCall(parts)}
}`;
});

/**
 * The backward dispatch: dQ over `withDq` query blocks and dK, dV over the key blocks when
 * `withDkv` (see `attnBackwardSource`), both in one dispatch. With `parts` 'dq' or 'dkv' (a
 * device that binds fewer than `BWD_BINDINGS`), only that part, binding only its outputs.
 */
export function attnBackwardKernel(p: AttnParams, withDq: boolean, withDkv: boolean, flops: number, bytes: number, parts: BwdParts = 'both'): Kernel {
  const rows = split(p.D).rows;
  const qGroups = withDq && parts !== 'dkv' ? Math.ceil(p.Nq / rows) : 0;
  const kGroups = withDkv && parts !== 'dq' ? Math.ceil(p.Nk / rows) : 0;
  const source = attnBackwardSource(parts === 'both' ? sourceParams(p) : { ...sourceParams(p), parts });
  return { name: 'attention_backward', source, workgroups: [qGroups + kGroups, p.H, p.B], flops, bytes, uniforms: packUniforms(BWD_FIELDS, [p.H, p.Nq, p.Nk, p.scale, parts === 'dkv' ? 0 : qGroups]) };
}

/** Row offset with the sizes baked in, for the naive baseline (benchmark only). */
const bakedRow = (p: AttnParams, n: string, N: number) => `((b * ${N}u + ${n}) * ${p.H}u + h) * ${p.D}u`;

/*
 * Naive baseline with explicit scores, as the textbook writes it: S = scale·Q Kᵀ into a
 * [B, H, Nq, Nk] buffer (one thread per score, rows read straight from global memory, masked
 * scores set to -3e38), the row softmax kernel turns S into P (a second such buffer), then O = P V
 * with one thread per output element. Nothing is staged or reused; only for the benchmark's comparison.
 */
export const attnNaiveScoresSource = memoSource('attn_naive_s', (p: AttnParams) => `${input('q', 0, p.dtypes[0])}
${input('k', 1, p.dtypes[1])}
${output('s', 2)}
${main1d(256)}
  if (gi >= ${p.B * p.H * p.Nq * p.Nk}u) { return; }
  let j = gi % ${p.Nk}u; let i = (gi / ${p.Nk}u) % ${p.Nq}u;
  let h = (gi / ${p.Nk * p.Nq}u) % ${p.H}u; let b = gi / ${p.Nk * p.Nq * p.H}u;
  var dot = 0.0;
  for (var d = 0u; d < ${p.D}u; d++) { dot = fma(ld_q(${bakedRow(p, 'i', p.Nq)} + d), ld_k(${bakedRow(p, 'j', p.Nk)} + d), dot); }
  s[gi] = ${p.causal ? `select(-3.0e38, dot * ${f(p.scale)}, j <= i)` : `dot * ${f(p.scale)}`};
}`);

/* O[b, i, h·D + d] = Σ_j P[b, h, i, j] V[b, j, h·D + d], one thread per output element. */
export const attnNaiveValuesSource = memoSource('attn_naive_pv', (p: AttnParams) => `${input('pr', 0)}
${input('v', 1, p.dtypes[2])}
${output('o', 2)}
${main1d(256)}
  if (gi >= ${p.B * p.Nq * p.H * p.D}u) { return; }
  let d = gi % ${p.D}u; let h = (gi / ${p.D}u) % ${p.H}u;
  let i = (gi / ${p.D * p.H}u) % ${p.Nq}u; let b = gi / ${p.D * p.H * p.Nq}u;
  let prow = ((b * ${p.H}u + h) * ${p.Nq}u + i) * ${p.Nk}u;
  var acc = 0.0;
  for (var j = 0u; j < ${p.Nk}u; j++) { acc = fma(ld_pr(prow + j), ld_v(${bakedRow(p, 'j', p.Nk)} + d), acc); }
  o[gi] = acc;
}`);

/** The naive baseline's score and value kernels (dispatch sizes and honest counts). */
export function attnNaiveKernels(p: AttnParams): { scores: Kernel; values: Kernel } {
  const S = p.B * p.H * p.Nq * p.Nk;
  const io = (n: number, dt: DType) => (dt === 'f16' ? 2 : 4) * n;
  const [nq, nk] = [p.B * p.Nq * p.H * p.D, p.B * p.Nk * p.H * p.D];
  return {
    scores: { name: 'attention_naive_scores', source: attnNaiveScoresSource(p), workgroups: grid(Math.ceil(S / 256)), flops: S * (2 * p.D + 1), bytes: io(nq, p.dtypes[0]) + io(nk, p.dtypes[1]) + 4 * S },
    values: { name: 'attention_naive_values', source: attnNaiveValuesSource(p), workgroups: grid(Math.ceil(nq / 256)), flops: 2 * nq * p.Nk, bytes: 4 * S + io(nk, p.dtypes[2]) + 4 * nq },
  };
}

/**
 * One tiled attention dispatch: `rows` query (or key) rows per (head, batch), `perGroup` of them a
 * workgroup (the split's rows by default), sizes in uniforms.
 */
export function attnKernel(name: string, source: (p: AttnSourceParams) => () => string, p: AttnParams, rows: number, flops: number, bytes: number, perGroup = split(p.D).rows): Kernel {
  return { name, source: source(sourceParams(p)), workgroups: [Math.ceil(rows / perGroup), p.H, p.B], flops, bytes, uniforms: packUniforms(ATTN_FIELDS, [p.H, p.Nq, p.Nk, p.scale]) };
}
