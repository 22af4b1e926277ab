// Batched GEMM kernels: a tiled one in workgroup memory for real work, and a naive one for comparison.
import type { DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
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
  batch: BatchDims;
  sum: BatchDims;
}

const TM = 64;
const TN = 64;
const TK = 16;
/** Row pitch of the tiles in workgroup memory: one pad word so column-wise stores hit distinct banks. */
const PITCH = TM + 1;

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
  return {
    flops: 2 * nOut * p.K * prod(p.sum.shape) + (p.bias ? nOut : 0) + (scaled(p) ? nOut : 0) + (p.residual || p.accumulate ? nOut : 0),
    bytes:
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
}

/**
 * The store of an accumulated value `v` at output index `i` (column `n`): times `alpha` (a WGSL
 * expression, or '' for none), the bias, the residual, or added to what the output already holds.
 */
function store(c: EpilogueCode, v: string, i: string, alpha: string): string {
  const add = `${alpha ? ` * ${alpha}` : ''}${c.bias ? ' + ld_bias(n)' : ''}${c.residual ? ` + ld_res(${i})` : ''}`;
  return c.accumulate ? `out[${i}] += ${v}${add};` : `out[${i}] = ${v}${add};`;
}

/** The optional inputs after a and b, in binding order. */
const extras = (c: EpilogueCode): [string, DType][] =>
  [c.bias ? (['bias', c.bias] as [string, DType]) : null, c.residual ? (['res', c.residual] as [string, DType]) : null].filter((e) => e !== null);

/** Bindings in order: a, b, then the bias and the residual where present, then out. */
function bindings(c: EpilogueCode): string {
  const ex = extras(c);
  return [input('a', 0, c.dtypeA), input('b', 1, c.dtypeB), ...ex.map(([name, d], i) => input(name, 2 + i, d)), output('out', 2 + ex.length)].join('\n');
}

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
  batchRank: number;
  sumRank: number;
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
  const sizes: UniformField[] = [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['tilesN', 'u32'], ['tilesM', 'u32'], ['total', 'u32'], ['nsum', 'u32'], ['alpha', 'f32']];
  return [...sizes, ...dimFields('b', c.batchRank), ...dimFields('s', c.sumRank)];
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

/** WGSL for the element index of A's (row i of op(A), col k) inside its matrix, and likewise for B. */
function aIndex(c: GemmCode, m: string, k: string): string {
  return c.transA ? `${k} * u.M + ${m}` : `${m} * u.K + ${k}`;
}
function bIndex(c: GemmCode, k: string, n: string): string {
  return c.transB ? `${n} * u.K + ${k}` : `${k} * u.N + ${n}`;
}

/*
 * Tiling. Each workgroup of 16x16 threads computes a 64x64 tile of one output matrix; thread
 * (tx, ty) owns the 4x4 register block at rows ty + 16i, cols tx + 16j (i, j < 4), so for a fixed
 * k a row of threads reads 16 consecutive B words and one broadcast A word from workgroup memory.
 * K is stepped by 16: per step all 256 threads stage a 64x16 slice of op(A) and a 16x64 slice of
 * op(B) into workgroup memory (2 x 16 x 65 floats = 8.1 KiB, k-major, padded so the transposing
 * stores do not collide on banks), 4 elements each, with consecutive threads reading consecutive
 * addresses of whichever axis is contiguous in memory (so both transposes load coalesced); then
 * 16 rank-1 updates of the 4x4 block run from workgroup memory. Out-of-range rows, columns and
 * k are loaded as zeros and never stored, so M, N, K need not be multiples of the tile. Summed
 * batch dims repeat the K loop into the same registers. Workgroups are numbered linearly over
 * (batch, tile row, tile column), column fastest so neighbours share A tiles, and that number is
 * spread over an x*y grid when it exceeds 65535. Every size (M, N, K, batch extents and strides,
 * alpha) is a uniform: the source depends only on the transposes, dtypes, epilogue and batch
 * ranks, so one pipeline serves every shape of a layer kind. The epilogue scales, adds the bias
 * and a residual, or adds into the output.
 */
const gemmSource = memoSource('gemm', (c: GemmCode) => {
  // Staging: element e (< 1024) of a slice maps to (row, k) so that lanes walk the contiguous axis.
  const stageA = c.transA ? `let k = e / ${TM}u; let m = e % ${TM}u;` : `let m = e / ${TK}u; let k = e % ${TK}u;`;
  const stageB = c.transB ? `let n = e / ${TK}u; let k = e % ${TK}u;` : `let k = e / ${TN}u; let n = e % ${TN}u;`;
  const acc = [0, 1, 2, 3];
  return `${bindings(c)}
${uniformDecl(2 + extras(c).length + 1, gemmFields(c))}
var<workgroup> As: array<f32, ${TK * PITCH}>;
var<workgroup> Bs: array<f32, ${TK * PITCH}>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = wid.x + wid.y * nwg.x;
  if (id >= u.total) { return; }
  let n0 = (id % u.tilesN) * ${TN}u;
  let m0 = ((id / u.tilesN) % u.tilesM) * ${TM}u;
  let z = id / (u.tilesN * u.tilesM);
  let tx = lid3.x;
  let ty = lid3.y;
  ${offsets('z', 'z', 'b', c.batchRank)}
${acc.map((i) => `  var acc${i} = vec4<f32>(0.0);`).join('\n')}
  for (var r = 0u; r < u.nsum; r++) {
    ${offsets('s', 'r', 's', c.sumRank)}
    let aOff = za + sa;
    let bOff = zb + sb;
    for (var k0 = 0u; k0 < u.K; k0 += ${TK}u) {
      for (var s = 0u; s < 4u; s++) {
        let e = lid + s * 256u;
        {
          ${stageA}
          let gm = m0 + m;
          let gk = k0 + k;
          var v = 0.0;
          if (gm < u.M && gk < u.K) { v = ld_a(aOff + ${aIndex(c, 'gm', 'gk')}); }
          As[k * ${PITCH}u + m] = v;
        }
        {
          ${stageB}
          let gn = n0 + n;
          let gk = k0 + k;
          var v = 0.0;
          if (gn < u.N && gk < u.K) { v = ld_b(bOff + ${bIndex(c, 'gk', 'gn')}); }
          Bs[k * ${PITCH}u + n] = v;
        }
      }
      workgroupBarrier();
      for (var k = 0u; k < ${TK}u; k++) {
        let ar = k * ${PITCH}u + ty;
        let br = k * ${PITCH}u + tx;
        let bv = vec4<f32>(Bs[br], Bs[br + 16u], Bs[br + 32u], Bs[br + 48u]);
${acc.map((i) => `        acc${i} += As[ar + ${16 * i}u] * bv;`).join('\n')}
      }
      workgroupBarrier();
    }
  }
  let oBase = z * u.M * u.N;
${acc
  .map(
    (i) => `  {
    let m = m0 + ty + ${16 * i}u;
    if (m < u.M) {
      for (var j = 0u; j < 4u; j++) {
        let n = n0 + tx + 16u * j;
        if (n < u.N) { ${store(c, `acc${i}[j]`, 'oBase + m * u.N + n', 'u.alpha')} }
      }
    }
  }`,
  )
  .join('\n')}
}`;
});

/** The tiled GEMM dispatch for `p` (see the tiling comment above). */
export function gemmKernel(p: GemmParams): Kernel {
  const batch = collapsed(p.batch);
  const sum = collapsed(p.sum);
  check(batch.shape.length <= MAX_RANK && sum.shape.length <= MAX_RANK, () => `matmul: more than ${MAX_RANK} batch dims after collapsing`);
  const code: GemmCode = {
    transA: p.transA,
    transB: p.transB,
    dtypeA: p.dtypeA,
    dtypeB: p.dtypeB,
    bias: p.bias,
    residual: p.residual ?? null,
    accumulate: !!p.accumulate,
    batchRank: batch.shape.length,
    sumRank: sum.shape.length,
  };
  const tilesN = Math.ceil(p.N / TN);
  const tilesM = Math.ceil(p.M / TM);
  const groups = tilesN * tilesM * prod(batch.shape);
  const dims = (d: BatchDims) => d.shape.flatMap((n, i) => [n, d.a[i]!, d.b[i]!]);
  const values = [p.M, p.N, p.K, tilesN, tilesM, groups, prod(sum.shape), p.alpha ?? 1, ...dims(batch), ...dims(sum)];
  return { name: 'matmul', source: gemmSource(code), workgroups: grid(groups), ...cost(p), uniforms: packUniforms(gemmFields(code), values) };
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
  const n = prod(p.batch.shape) * p.M * p.N;
  return { name: 'matmul_naive', source: naiveSource(p), workgroups: grid(Math.ceil(n / NAIVE_WG)), ...cost(p) };
}
