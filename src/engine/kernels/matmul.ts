// Batched GEMM kernels: a tiled one in workgroup memory for real work, and a naive one for comparison.
import type { DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import { MASK_HASH } from './dropout.js';
import { broadcastIndex, collapseDims, input, main1d, output, packUniforms, uniformDecl, type UniformField } from './wgsl.js';

/** A set of batch dims: their extents and, per operand, the element stride of each (0 where broadcast). */
export interface BatchDims {
  shape: number[];
  a: number[];
  b: number[];
}

/**
 * out[z] = alpha * sum over r of op(A[z, r]) op(B[z, r]) (+ bias), where op transposes when asked.
 * op(A) is M x K (A stored K x M when `transA`), op(B) is K x N (B stored N x K when `transB`).
 * `batch` indexes output matrices (out is [batch..., M, N], contiguous); `sum` are batch dims
 * summed into each output (the gradient of a broadcast operand). Both are aligned dim for dim:
 * a dim that is kept has extent 1 in `sum`, and the reverse.
 */
export interface GemmParams {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  dtypeA: DType;
  dtypeB: DType;
  /** Storage dtype of a bias [N] added in the epilogue, or null for none. */
  bias: DType | null;
  /** The product is multiplied by this in the epilogue, before the bias (default 1: no multiply). */
  alpha?: number;
  /** Storage dtype of a residual shaped like the output, added in the epilogue (a binding after the bias). */
  residual?: DType;
  /** Add into what the output holds (out += result) instead of overwriting it. */
  accumulate?: boolean;
  /**
   * Store each output matrix transposed, [N, M] (element (m, n) at n * M + m; the residual is read
   * at the same index, the bias still by n): a channel-major [C, pixels] layout written straight
   * from a token-major product. Not with a split or a mask on the product.
   */
  transOut?: boolean;
  /** Output tile edge (default 64); see `gemmTiling`. */
  tile?: GemmTile;
  /** Cut K into this many slices, slice z writing partial sums at z * (output size) (default 1). */
  splits?: number;
  /** The device has shader-f16: f16-stored operands are read as `array<f16>` (see `operand`). */
  f16?: boolean;
  /** EXPERIMENT: stage A and B tiles in workgroup memory as f16 ('store': f32 math; 'mul': f16 products, f32 sums). */
  f16Tiles?: 'store' | 'mul';
  /** Dropout folded in: A, B or A2 masked as loaded, or the product masked before the epilogue's other terms. */
  drop?: GemmDrop;
  /** A second product summed into the same accumulators (`GemmTerm`); no batch dims, no split. */
  second?: GemmTerm;
  batch: BatchDims;
  sum: BatchDims;
}

/**
 * The second product of a two-term GEMM: out = alpha * (op(A) op(B) + scale * op(A2) op(B2)) (+
 * epilogue), op(A2) M x K2 and op(B2) K2 x N, bound after A and B. One dispatch for what took a
 * GEMM and a second one adding into its output: a LoRA layer's base + up projection
 * (x w^T + s h up^T), or its input gradient (gY w + s gH down). `scale` multiplies A2 as it is
 * staged (default 1).
 */
export interface GemmTerm {
  K: number;
  transA: boolean;
  transB: boolean;
  dtypeA: DType;
  dtypeB: DType;
  scale?: number;
}

/**
 * Dropout inside a GEMM, drawing the mask `dropoutKernel` draws: element i of the operand's
 * binding (or of the output's) is kept when mask_hash(seed, i + offset) >= threshold and then
 * scaled, so a GEMM over drop(h) reads the same values as one over the separate op's output.
 */
export interface GemmDrop {
  on: 'a' | 'b' | 'out' | 'a2';
  seed: number;
  /** `keepThreshold(p)` and `Math.fround(1 / (1 - p))`, as the separate op takes them. */
  threshold: number;
  scale: number;
  /** Mask index of the binding's first element (a slab of a tensor masked as a whole). */
  offset: number;
}

/** K-step of the tiled GEMM; the output tile edge T (32 or 64) is chosen per problem, rows padded to T + 1. */
const TK = 16;

/** Most batch dims (and summed dims) a GEMM takes after collapsing; each costs three uniform words. */
const MAX_RANK = 4;

const prod = (s: readonly number[]) => s.reduce((x, y) => x * y, 1);

function check(cond: boolean, msg: () => string): void {
  if (!cond) throw new Error(msg());
}

/** Elements of an operand that a GEMM touches (each counted once): broadcast dims do not multiply. */
function operandElems(p: GemmParams, which: 'a' | 'b'): number {
  const mat = which === 'a' ? p.M * p.K : p.K * p.N;
  let n = mat;
  p.batch.shape.forEach((d, i) => (n *= p.batch[which][i] ? d : 1));
  p.sum.shape.forEach((d, i) => (n *= p.sum[which][i] ? d : 1));
  return n;
}

function cost(p: GemmParams): { flops: number; bytes: number } {
  const nOut = prod(p.batch.shape) * p.M * p.N;
  const per = (d: DType) => (d === 'f32' ? 4 : 2);
  const t = p.second;
  return {
    flops: 2 * nOut * (p.K * prod(p.sum.shape) + (t?.K ?? 0)) + (p.bias ? nOut : 0) + (scaled(p) ? nOut : 0) + (p.residual || p.accumulate ? nOut : 0),
    bytes:
      (t ? p.M * t.K * per(t.dtypeA) + t.K * p.N * per(t.dtypeB) : 0) +
      operandElems(p, 'a') * per(p.dtypeA) +
      operandElems(p, 'b') * per(p.dtypeB) +
      nOut * 4 +
      (p.bias ? p.N * per(p.bias) : 0) +
      (p.residual ? nOut * per(p.residual) : 0) +
      (p.accumulate ? nOut * 4 : 0),
  };
}

/** Whether the epilogue multiplies by alpha. */
const scaled = (p: GemmParams) => p.alpha !== undefined && p.alpha !== 1;

/** What the epilogue and the bindings depend on. */
interface EpilogueCode {
  dtypeA: DType;
  dtypeB: DType;
  bias: DType | null;
  residual?: DType | null;
  accumulate?: boolean;
  /** f16 operands are declared `array<f16>` and read natively (the device has shader-f16). */
  f16?: boolean;
  /** The source carries the run-time mask gates (`maskable`). */
  mask?: boolean;
  /** The second term's operand layout and dtypes (bindings a2, b2 after b), or none. */
  second?: TermCode | null;
}

/** The element index in an output matrix of row m, column n (`GemmParams.transOut`). */
const outIndex = (transOut: boolean) => (transOut ? 'oBase + n * u.M + m' : 'oBase + m * u.N + n');

/** What a second term changes in the source: its transposes and dtypes (K2 and its scale are uniforms). */
type TermCode = Pick<GemmTerm, 'transA' | 'transB' | 'dtypeA' | 'dtypeB'>;

/**
 * A GEMM operand binding with its `ld_<name>` loader returning f32: with `native` and f16 storage
 * an `array<f16>` read and widened exactly (needs `enable f16;`), else `input`'s (f16 unpacked from
 * u32 pairs). Products and sums stay f32 either way, so both give the same results.
 */
export function operand(name: string, binding: number, dtype: DType, native: boolean): string {
  if (dtype !== 'f16' || !native) return input(name, binding, dtype);
  return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<f16>;
fn ld_${name}(i: u32) -> f32 { return f32(${name}[i]); }`;
}

/** The `enable` directive a source needs when it reads f16 natively, else ''. */
export const f16Directive = (native: boolean, dtypes: readonly (DType | null | undefined)[]) => (native && dtypes.includes('f16') ? 'enable f16;\n' : '');

/**
 * The store of an accumulated value `v` at output index `i` (column `n`): times `alpha` (a WGSL
 * expression, or '' for none), the bias, the residual, or added to what the output already holds.
 */
function store(c: EpilogueCode, v0: string, i: string, alpha: string): string {
  const v = c.mask ? `drop_(${SITE.out}, ${i}, ${v0})` : v0;
  const add = `${alpha ? ` * ${alpha}` : ''}${c.bias ? ' + ld_bias(n)' : ''}${c.residual ? ` + ld_res(${i})` : ''}`;
  return c.accumulate ? `out[${i}] += ${v}${add};` : `out[${i}] = ${v}${add};`;
}

/** The optional inputs after a and b, in binding order. */
const extras = (c: EpilogueCode): [string, DType][] =>
  [c.bias ? (['bias', c.bias] as [string, DType]) : null, c.residual ? (['res', c.residual] as [string, DType]) : null].filter((e) => e !== null);

/** Bindings in order: a, b, a2 and b2 for a second term, then the bias and the residual where present, then out. */
function bindings(c: EpilogueCode): string {
  const ex = extras(c);
  const native = !!c.f16;
  const t = c.second;
  const ops = [operand('a', 0, c.dtypeA, native), operand('b', 1, c.dtypeB, native), ...(t ? [operand('a2', 2, t.dtypeA, native), operand('b2', 3, t.dtypeB, native)] : [])];
  const at = ops.length;
  const dtypes = [c.dtypeA, c.dtypeB, t?.dtypeA, t?.dtypeB];
  return f16Directive(native, dtypes) + [...ops, ...ex.map(([name, d], i) => input(name, at + i, d)), output('out', at + ex.length)].join('\n');
}

/** Storage bindings before the uniforms: the operands, the epilogue's inputs and out. */
const bindingCount = (c: EpilogueCode) => (c.second ? 4 : 2) + extras(c).length + 1;

/** The naive kernel's element indices of A and B, sizes baked in. */
function aIndexConst(p: GemmParams, m: string, k: string): string {
  return p.transA ? `${k} * ${p.M}u + ${m}` : `${m} * ${p.K}u + ${k}`;
}
function bIndexConst(p: GemmParams, k: string, n: string): string {
  return p.transB ? `${n} * ${p.K}u + ${k}` : `${k} * ${p.N}u + ${n}`;
}

/** What a GEMM's source depends on: transposes, dtypes, epilogue kind and the ranks of its batch dims. Sizes are uniforms. */
interface GemmCode {
  transA: boolean;
  transB: boolean;
  dtypeA: DType;
  dtypeB: DType;
  bias: DType | null;
  residual: DType | null;
  accumulate: boolean;
  transOut: boolean;
  batchRank: number;
  sumRank: number;
  tile: GemmTile;
  f16: boolean;
  mask: boolean;
  /** Whether the staging loads of A and B pass the mask gate (else only A2's and the product's do). */
  gates: boolean;
  second: TermCode | null;
  f16Tiles?: 'store' | 'mul';
}

/** Batch dims with size-1 dims dropped and contiguous neighbours merged (rank 0 when none is left). */
function collapsed(d: BatchDims): BatchDims {
  const c = collapseDims(d.shape, [d.a, d.b]);
  if (c.shape.length === 1 && c.shape[0] === 1) return { shape: [], a: [], b: [] };
  return { shape: c.shape, a: c.strides[0]!, b: c.strides[1]! };
}

const dimFields = (pre: string, rank: number): UniformField[] =>
  Array.from({ length: rank }, (_, i) => [[`${pre}n${i}`, 'u32'], [`${pre}a${i}`, 'u32'], [`${pre}b${i}`, 'u32']] as UniformField[]).flat();

function gemmFields(c: GemmCode): UniformField[] {
  const sizes: UniformField[] = [
    ...['M', 'N', 'K', 'tilesN', 'tilesM', 'total', 'nsum'].map((n) => [n, 'u32'] as UniformField),
    ['alpha', 'f32'],
    ...['splits', 'chunk', 'slice'].map((n) => [n, 'u32'] as UniformField),
  ];
  const drop: UniformField[] = c.mask ? [['dsite', 'u32'], ['dseed', 'u32'], ['dthreshold', 'u32'], ['dscale', 'f32'], ['doffset', 'u32']] : [];
  const second: UniformField[] = c.second ? [['K2', 'u32'], ['scale2', 'f32']] : [];
  return [...sizes, ...drop, ...second, ...dimFields('b', c.batchRank), ...dimFields('s', c.sumRank)];
}

/**
 * WGSL declaring `${v}a` and `${v}b`, the element offsets of A's and B's matrices for linear index
 * `idx` over the dims whose uniforms start with `pre` (innermost last).
 */
function offsets(v: string, idx: string, pre: string, rank: number): string {
  if (!rank) return `let ${v}a = 0u; let ${v}b = 0u;`;
  const steps = Array.from({ length: rank }, (_, j) => rank - 1 - j).map(
    (d) => `{ let c = ${v}r % u.${pre}n${d}; ${v}r = ${v}r / u.${pre}n${d}; ${v}a += c * u.${pre}a${d}; ${v}b += c * u.${pre}b${d}; }`,
  );
  return `var ${v}a = 0u; var ${v}b = 0u; var ${v}r = ${idx};\n  ${steps.join('\n  ')}`;
}

/** WGSL for the element index of A's (row i of op(A), col k) inside its matrix over `K` (a uniform's name), and likewise for B. */
function aIndex(transA: boolean, m: string, k: string, K = 'u.K'): string {
  return transA ? `${k} * u.M + ${m}` : `${m} * ${K} + ${k}`;
}
function bIndex(transB: boolean, k: string, n: string, K = 'u.K'): string {
  return transB ? `${n} * ${K} + ${k}` : `${k} * u.N + ${n}`;
}

/** The mask sites as the `dsite` uniform numbers them (0: no mask). */
const SITE = { a: '1u', b: '2u', out: '3u', a2: '4u' } as const;
const siteValue = { a: 1, b: 2, out: 3, a2: 4 } as const;

/**
 * The folded mask: dropout's hash, its threshold and scale, the index offset, and which site (if
 * any) it applies at, all from uniforms. The site is a uniform, not source, so the masked and
 * unmasked uses of one GEMM kind share a pipeline (a LoRA's dUp and dDown, gH and other f32 GEMMs).
 */
const DROP_FN = `${MASK_HASH}
fn drop_(site: u32, i: u32, v: f32) -> f32 {
  if (u.dsite != site) { return v; }
  return select(0.0, v * u.dscale, mask_hash(u.dseed, i + u.doffset) >= u.dthreshold);
}`;

/**
 * Whether a GEMM's source carries the mask gates: every f32 x f32 one (dropout only ever applies
 * to activations, and the LoRA's GEMMs are all f32), so GEMMs reading an f16 weight, the big ones,
 * keep staging loads without the uniform branch.
 */
const maskable = (p: GemmParams) => !!p.drop || (p.dtypeA === 'f32' && p.dtypeB === 'f32');

/** Whether A's and B's staging loads pass the gate: as `maskable`, but a mask on A2 alone leaves them plain. */
const gated = (p: GemmParams) => (p.drop ? p.drop.on !== 'a2' : maskable(p)) || (p.dtypeA === 'f32' && p.dtypeB === 'f32');

/**
 * The staging load of operand `which` at element `i` into `v`, through the mask gate where the
 * source has one. A two-term source always gates A2 (the LoRA's h) and scales it by `scale2`, so
 * its masked and unmasked uses share a pipeline.
 */
function load(c: GemmCode, which: 'a' | 'b' | 'a2' | 'b2', i: string): string {
  if (which === 'a2') return `let i_ = ${i}; v = drop_(${SITE.a2}, i_, ld_a2(i_)) * u.scale2;`;
  const gate = which !== 'b2' && c.gates;
  return gate ? `let i_ = ${i}; v = drop_(${SITE[which]}, i_, ld_${which}(i_));` : `v = ld_${which}(${i});`;
}

/**
 * Stage element e (< T * 16) of one operand's slice into workgroup memory, zero outside the matrix:
 * row `r` is m (op(A), into As) or n (op(B), into Bs); `kOuter` when k is the slower index of e. Either
 * way lanes walk the operand's contiguous axis. `ld` sets v from global index (g<r>, gk).
 */
function stage(T: number, r: 'm' | 'n', kOuter: boolean, end: string, ld: string, h = false): string {
  const [origin, bound, dest] = r === 'm' ? ['m0', 'u.M', 'As'] : ['n0', 'u.N', 'Bs'];
  const split = kOuter ? `let k = e / ${T}u; let ${r} = e % ${T}u;` : `let ${r} = e / ${TK}u; let k = e % ${TK}u;`;
  return `{
          ${split}
          let g${r} = ${origin} + ${r};
          let gk = k0 + k;
          var v = 0.0;
          if (g${r} < ${bound} && gk < ${end}) { ${ld} }
          ${dest}[k * ${T + 1}u + ${r}] = ${h ? 'f16(v)' : 'v'};
        }`;
}

/**
 * One K loop of the tiled GEMM (see the tiling comment) over the term of operands `a`, `b` with
 * transposes `tA`, `tB`, k in [begin, end) and row length `K`: stage, barrier, 16 rank-1 updates.
 */
function kLoop(c: GemmCode, t: { a: 'a' | 'a2'; b: 'b' | 'b2'; tA: boolean; tB: boolean; begin: string; end: string; K: string; aOff: string; bOff: string }): string {
  const T = c.tile;
  const TD = T / 4;
  const loads = (T * TK) / (TD * TD);
  const idx = [0, 1, 2, 3];
  return `for (var k0 = ${t.begin}; k0 < ${t.end}; k0 += ${TK}u) {
      for (var s = 0u; s < ${loads}u; s++) {
        let e = lid + s * ${TD * TD}u;
        ${stage(T, 'm', t.tA, t.end, load(c, t.a, `${t.aOff}${aIndex(t.tA, 'gm', 'gk', t.K)}`), !!c.f16Tiles)}
        ${stage(T, 'n', !t.tB, t.end, load(c, t.b, `${t.bOff}${bIndex(t.tB, 'gk', 'gn', t.K)}`), !!c.f16Tiles)}
      }
      workgroupBarrier();
      for (var k = 0u; k < ${TK}u; k++) {
        let ar = k * ${T + 1}u + ty;
        let br = k * ${T + 1}u + tx;
${inner(c, idx, TD)}
      }
      workgroupBarrier();
    }`;
}

/** The 4x4 block's rank-1 update at k from As/Bs (f32 tiles, or the f16-tile experiment's two forms). */
function inner(c: GemmCode, idx: number[], TD: number): string {
  const bs = idx.map((j) => `Bs[br + ${TD * j}u]`).join(', ');
  if (c.f16Tiles === 'mul') return `        let bv = vec4<f16>(${bs});
${idx.map((i) => `        acc${i} += vec4<f32>(As[ar + ${TD * i}u] * bv);`).join('\n')}`;
  if (c.f16Tiles === 'store') return `        let bv = vec4<f32>(vec4<f16>(${bs}));
${idx.map((i) => `        acc${i} += f32(As[ar + ${TD * i}u]) * bv;`).join('\n')}`;
  return `        let bv = vec4<f32>(${bs});
${idx.map((i) => `        acc${i} += As[ar + ${TD * i}u] * bv;`).join('\n')}`;
}

/*
 * Tiling. Each workgroup of D x D threads computes a T x T tile of one output matrix (T = 64, D = 16,
 * or for small problems T = 32, D = 8: see gemmTiling); thread (tx, ty) owns the 4x4 register
 * block at rows ty + Di, cols tx + Dj (i, j < 4), so for a fixed k a row of threads reads D
 * consecutive B words and one broadcast A word from workgroup memory. K is stepped by 16: per
 * step the threads stage a T x 16 slice of op(A) and a 16 x T slice of op(B) into workgroup memory
 * (2 x 16 x (T + 1) floats, 8.1 KiB at T = 64, k-major, padded so the transposing stores do not
 * collide on banks), T * 16 / D^2 elements each, with consecutive threads reading consecutive
 * addresses of whichever axis is contiguous in memory (so both transposes load coalesced); then
 * 16 rank-1 updates of the 4x4 block run from workgroup memory. Split-K: workgroup z of `splits`
 * runs k in [z * chunk, (z + 1) * chunk) and writes its partial sums to slice z of a workspace that
 * the split-sum pass adds up with the epilogue. Out-of-range rows, columns and
 * k are loaded as zeros and never stored, so M, N, K need not be multiples of the tile. Summed
 * batch dims repeat the K loop into the same registers. Workgroups are numbered linearly over
 * (batch, tile row, tile column), column fastest so neighbours share A tiles, and that number is
 * spread over an x*y grid when it exceeds 65535. Every size (M, N, K, batch extents and strides,
 * alpha) is a uniform: the source depends only on the transposes, dtypes, epilogue and batch
 * ranks, so one pipeline serves every shape of a layer kind. The epilogue scales, adds the bias
 * and a residual, or adds into the output. A folded dropout masks A or B as the tiles are staged
 * (each element by its index in the operand's binding), or the product before the epilogue. A
 * second term (A2, B2 over K2) runs a second K loop into the same registers before the epilogue.
 */
const gemmSource = memoSource('gemm', (c: GemmCode) => {
  const T = c.tile;
  const b = bindings(c);
  const tt = c.f16Tiles ? 'f16' : 'f32';
  return `${c.f16Tiles && !b.startsWith('enable f16;') ? 'enable f16;\n' : ''}${b}
${uniformDecl(bindingCount(c), gemmFields(c))}
${c.mask ? DROP_FN : ''}
var<workgroup> As: array<${tt}, ${TK * (T + 1)}>;
var<workgroup> Bs: array<${tt}, ${TK * (T + 1)}>;
@compute @workgroup_size(${T / 4}, ${T / 4})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = wid.x + wid.y * nwg.x;
  if (id >= u.total) { return; }
${gemmBody(c)}
}`;
});

/** The statements of one GEMM over its workgroup number `id` (threads `lid3`, `lid`): K loops, then the epilogue's stores. */
function gemmBody(c: GemmCode): string {
  const T = c.tile;
  // TD x TD threads, each a 4x4 block at stride TD.
  const TD = T / 4;
  const vec = 'vec4<f32>';
  const idx = [0, 1, 2, 3];
  const t = c.second;
  const main = kLoop(c, { a: 'a', b: 'b', tA: c.transA, tB: c.transB, begin: 'kBegin', end: 'kEnd', K: 'u.K', aOff: 'aOff + ', bOff: 'bOff + ' });
  const secondLoop = t ? `\n  ${kLoop(c, { a: 'a2', b: 'b2', tA: t.transA, tB: t.transB, begin: '0u', end: 'u.K2', K: 'u.K2', aOff: '', bOff: '' })}` : '';
  return `  let n0 = (id % u.tilesN) * ${T}u;
  let m0 = ((id / u.tilesN) % u.tilesM) * ${T}u;
  let zs = id / (u.tilesN * u.tilesM);
  let z = zs / u.splits;
  let ks = zs % u.splits;
  let kBegin = ks * u.chunk; let kEnd = min(u.K, kBegin + u.chunk);
  let tx = lid3.x;
  let ty = lid3.y;
  ${offsets('z', 'z', 'b', c.batchRank)}
${idx.map((i) => `  var acc${i} = ${vec}(0.0);`).join('\n')}
  for (var r = 0u; r < u.nsum; r++) {
    ${offsets('s', 'r', 's', c.sumRank)}
    let aOff = za + sa;
    let bOff = zb + sb;
    ${main}
  }${secondLoop}
  let oBase = z * u.M * u.N + ks * u.slice;
${idx
  .map(
    (i) => `  {
    let m = m0 + ty + ${TD * i}u;
    if (m < u.M) {
      for (var j = 0u; j < 4u; j++) {
        let n = n0 + tx + ${TD}u * j;
        if (n < u.N) { ${store(c, `acc${i}[j]`, outIndex(c.transOut), 'u.alpha')} }
      }
    }
  }`,
  )
  .join('\n')}`;
}

/**
 * One problem's WGSL renamed for a pair kernel: its bindings renumbered from `base`, and its
 * binding names, loaders, uniform fields and mask function suffixed with `sfx`, so two GEMMs'
 * texts (generated as for a kernel of their own) live in one module.
 */
function renamed(text: string, base: number, sfx: string): string {
  return text
    .replace(/^enable f16;\n/, '')
    .replace(/@binding\((\d+)\)/g, (_, i: string) => `@binding(${base + Number(i)})`)
    .replace(/(var<storage, read(?:_write)?> )(\w+):/g, `$1$2${sfx}:`)
    .replace(/\b(a|b|a2|b2|bias|res|out)\[/g, `$1${sfx}[`)
    .replace(/\bld_(\w+)\(/g, `ld_$1${sfx}(`)
    .replace(/\bdrop_\(/g, `drop_${sfx}(`)
    .replace(/\bu\.(\w+)/g, `u.$1${sfx}`);
}

/** The mask function alone (the hash is declared once per module). */
const DROP_ONLY = DROP_FN.slice(MASK_HASH.length);

/*
 * Two independent GEMMs in one dispatch (a grouped GEMM): workgroups [0, total0) run the first
 * problem's tiles and [total0, total0 + total1) the second's, each as its own kernel would (same
 * tile edge, so one workgroup size). Their bindings follow one another, first's then second's;
 * their uniforms share one struct, suffixed _p0 and _p1. The branch is on the workgroup number,
 * uniform across a workgroup, so the barriers inside stay in uniform control flow.
 */
const gemmPairSource = memoSource('gemm_pair', (cs: readonly [GemmCode, GemmCode]) => {
  const T = cs[0].tile;
  const f16 = cs.some((c) => bindings(c).startsWith('enable f16;'));
  const parts = cs.map((c, i) => {
    const base = i === 0 ? 0 : bindingCount(cs[0]);
    const sfx = `_p${i}`;
    return {
      binds: renamed(bindings(c), base, sfx),
      drop: c.mask ? renamed(DROP_ONLY, 0, sfx) : '',
      fn: `fn gemm${sfx}(id: u32, lid3: vec3<u32>, lid: u32) {\n${renamed(gemmBody(c), 0, sfx)}\n}`,
    };
  });
  const fields = cs.flatMap((c, i) => gemmFields(c).map(([n, ty]) => [`${n}_p${i}`, ty] as UniformField));
  return `${f16 ? 'enable f16;\n' : ''}${parts.map((q) => q.binds).join('\n')}
${uniformDecl(bindingCount(cs[0]) + bindingCount(cs[1]), fields)}
${cs.some((c) => c.mask) ? MASK_HASH : ''}
${parts.map((q) => q.drop).join('\n')}
var<workgroup> As: array<f32, ${TK * (T + 1)}>;
var<workgroup> Bs: array<f32, ${TK * (T + 1)}>;
${parts.map((q) => q.fn).join('\n')}
@compute @workgroup_size(${T / 4}, ${T / 4})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = wid.x + wid.y * nwg.x;
  if (id < u.total_p0) { gemm_p0(id, lid3, lid); } else if (id < u.total_p0 + u.total_p1) { gemm_p1(id - u.total_p0, lid3, lid); }
}`;
});

/** Tile sizes the GEMM comes in (each a pipeline per layer kind). */
export type GemmTile = 32 | 64;

/**
 * Thresholds of `gemmTiling`, from one run of src/cli/bench-tiles.ts on SwiftShader (2 loaded CPU
 * cores): the 32 tile beat the 64 one 1.2-2.4x on every swept shape with fewer than 128 64-tiles
 * (LoRA down/up/dW, 256x320, 77x320, 64x1280; 64^3, one full tile, was the exception: 17 vs 11 ms);
 * split-K lost on every shape (e.g. dW 16x640 over 4096: 366 ms unsplit, 750 split 16 ways), as
 * a CPU has no idle cores to fill, so it is off (splitBelow 0) until a run on a real GPU sets it.
 * Each tile is a pipeline per layer kind, and compiling costs: cold first dispatch on lavapipe
 * (LLVM 15, load 9 on 2 cores) took 5.5 s for the 64 tile and 9.1 s for the 32 one, whose
 * 8 staging loads per thread unroll further. Mutable so that a bench or test can steer the
 * choice; the split path is tested that way.
 */
export const gemmThresholds = {
  /** Use the 32x32 tile when the 64x64 tiles number fewer than this. */
  smallTileBelow: 128,
  /** Split K when the chosen tiles give fewer workgroups than this... */
  splitBelow: 0,
  /** ...into slices of at least this many k, and at most maxSplits of them. */
  minChunk: 256,
  maxSplits: 16,
};

/**
 * Tile and K split of a GEMM with `batch` output matrices of M x N over K (a pure function of
 * its arguments and the thresholds). The big tile wastes work on small or ragged outputs; few
 * tiles over a long K (a LoRA weight gradient: [r, in] over every token) leave most of a GPU
 * idle, so K can be cut into slices summed by a second pass.
 */
export function gemmTiling(M: number, N: number, K: number, batch = 1): { tile: GemmTile; splits: number } {
  const t = gemmThresholds;
  const big = Math.ceil(M / 64) * Math.ceil(N / 64) * batch;
  const tile: GemmTile = big < t.smallTileBelow ? 32 : 64;
  const groups = Math.ceil(M / tile) * Math.ceil(N / tile) * batch;
  const splits = batch > 1 || groups >= t.splitBelow ? 1 : Math.max(1, Math.min(t.maxSplits, Math.ceil(t.splitBelow / groups), Math.floor(K / t.minChunk)));
  return { tile, splits };
}

/** The tiled GEMM dispatch for `p` (see the tiling comment above). With `splits`, it writes [splits, ...out] partial sums. */
export function gemmKernel(p: GemmParams): Kernel {
  const { code, values, groups } = gemmSetup(p);
  const c = cost(p);
  const splits = p.splits ?? 1;
  const out = prod(p.batch.shape) * p.M * p.N;
  return { name: 'matmul', source: gemmSource(code), workgroups: grid(groups), flops: c.flops, bytes: c.bytes + (splits - 1) * out * 4, uniforms: packUniforms(gemmFields(code), values) };
}

/**
 * Two independent GEMMs as one dispatch (`gemmPairSource`): bind the first's operands, epilogue
 * inputs and output, then the second's. Both take the first's tile; neither may split K.
 */
export function gemmPairKernel(p0: GemmParams, p1: GemmParams): Kernel {
  const tile = p0.tile ?? 64;
  check((p0.splits ?? 1) === 1 && (p1.splits ?? 1) === 1, () => 'matmul: a GEMM pair does not split K');
  const a = gemmSetup(p0);
  const b = gemmSetup({ ...p1, tile });
  const c0 = cost(p0);
  const c1 = cost(p1);
  const fields = [...gemmFields(a.code), ...gemmFields(b.code)];
  return {
    name: 'matmul',
    source: gemmPairSource([a.code, b.code]),
    workgroups: grid(a.groups + b.groups),
    flops: c0.flops + c1.flops,
    bytes: c0.bytes + c1.bytes,
    uniforms: packUniforms(fields, [...a.values, ...b.values]),
  };
}

/** The source parameters, uniform values and workgroup count of one GEMM problem, checking what the kernel supports. */
function gemmSetup(p: GemmParams): { code: GemmCode; values: number[]; groups: number } {
  const batch = collapsed(p.batch);
  const sum = collapsed(p.sum);
  check(batch.shape.length <= MAX_RANK && sum.shape.length <= MAX_RANK, () => `matmul: more than ${MAX_RANK} batch dims after collapsing`);
  const splits = p.splits ?? 1;
  check(splits === 1 || (!p.bias && !p.residual && !p.accumulate && p.drop?.on !== 'out'), () => 'matmul: a split GEMM leaves its epilogue to the split-sum');
  const t = p.second;
  check(!t || (splits === 1 && !batch.shape.length && !sum.shape.length), () => 'matmul: a two-term GEMM takes no batch dims and no split');
  check(p.drop?.on !== 'a2' || !!t, () => 'matmul: a mask on A2 needs a second term');
  check(!p.transOut || (splits === 1 && p.drop?.on !== 'out'), () => 'matmul: a transposed output takes no split and no mask on the product');
  const tile = p.tile ?? 64;
  const code: GemmCode = {
    transA: p.transA,
    transB: p.transB,
    dtypeA: p.dtypeA,
    dtypeB: p.dtypeB,
    bias: p.bias,
    residual: p.residual ?? null,
    accumulate: !!p.accumulate,
    transOut: !!p.transOut,
    batchRank: batch.shape.length,
    sumRank: sum.shape.length,
    tile,
    // Only a source with an f16 operand differs, so f32 GEMMs share one pipeline either way.
    f16: !!p.f16 && [p.dtypeA, p.dtypeB, t?.dtypeA, t?.dtypeB].includes('f16'),
    mask: maskable(p) || !!t,
    gates: gated(p),
    second: t ? { transA: t.transA, transB: t.transB, dtypeA: t.dtypeA, dtypeB: t.dtypeB } : null,
    ...(p.f16Tiles ? { f16Tiles: p.f16Tiles } : {}),
  };
  const tilesN = Math.ceil(p.N / tile);
  const tilesM = Math.ceil(p.M / tile);
  const nb = prod(batch.shape);
  const groups = tilesN * tilesM * nb * splits;
  const chunk = Math.max(TK, Math.ceil(Math.ceil(p.K / splits) / TK) * TK);
  const dims = (d: BatchDims) => d.shape.flatMap((n, i) => [n, d.a[i]!, d.b[i]!]);
  const d = p.drop;
  const drop = !code.mask ? [] : d ? [siteValue[d.on], d.seed >>> 0, d.threshold, d.scale, d.offset] : [0, 0, 0, 1, 0];
  const second = t ? [t.K, t.scale ?? 1] : [];
  const values = [p.M, p.N, p.K, tilesN, tilesM, groups, prod(sum.shape), p.alpha ?? 1, splits, chunk, nb * p.M * p.N, ...drop, ...second, ...dims(batch), ...dims(sum)];
  return { code, values, groups };
}

const NAIVE_WG = 256;

/*
 * Tiling: none, on purpose. One thread per output element reads its row of op(A) and column of
 * op(B) straight from storage; this is the baseline the benchmark's "vs naive" ratio divides by.
 */
const naiveSource = memoSource('matmul_naive', (p: GemmParams) => {
  const n = prod(p.batch.shape) * p.M * p.N;
  return `${bindings(p)}
${main1d(NAIVE_WG)}
  if (gi >= ${n}u) { return; }
  let z = gi / ${p.M * p.N}u;
  let m = (gi / ${p.N}u) % ${p.M}u;
  let n = gi % ${p.N}u;
  let aBase = ${broadcastIndex('z', p.batch.shape, p.batch.a)};
  let bBase = ${broadcastIndex('z', p.batch.shape, p.batch.b)};
  var acc = 0.0;
  for (var r = 0u; r < ${prod(p.sum.shape)}u; r++) {
    let aOff = aBase + ${broadcastIndex('r', p.sum.shape, p.sum.a)};
    let bOff = bBase + ${broadcastIndex('r', p.sum.shape, p.sum.b)};
    for (var k = 0u; k < ${p.K}u; k++) {
      acc += ld_a(aOff + ${aIndexConst(p, 'm', 'k')}) * ld_b(bOff + ${bIndexConst(p, 'k', 'n')});
    }
  }
  ${store(p, 'acc', 'gi', scaled(p) ? `bitcast<f32>(${new Uint32Array(Float32Array.of(p.alpha!).buffer)[0]}u)` : '')}
}`;
});

/** One thread per output element, no tiling: same semantics as `gemmKernel`. */
export function matmulNaiveKernel(p: GemmParams): Kernel {
  check(!p.drop && !p.second && !p.transOut, () => 'matmul_naive: no folded dropout, no second term, no transposed output');
  const n = prod(p.batch.shape) * p.M * p.N;
  return { name: 'matmul_naive', source: naiveSource(p), workgroups: grid(Math.ceil(n / NAIVE_WG)), ...cost(p) };
}
