// Batched GEMM kernels: a tiled one in workgroup memory for real work, and a naive one for comparison.
import type { DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import { broadcastIndex, input, main1d, output } from './wgsl.js';

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

const prod = (s: readonly number[]) => s.reduce((x, y) => x * y, 1);

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

/**
 * The store of an accumulated value `v` at output index `i` (column `n`): alpha (an exact f32
 * literal), the bias, the residual, or what the output already holds.
 */
function store(p: GemmParams, v: string, i: string): string {
  const a = scaled(p) ? ` * bitcast<f32>(${new Uint32Array(Float32Array.of(p.alpha!).buffer)[0]}u)` : '';
  const add = `${p.bias ? ' + ld_bias(n)' : ''}${p.residual ? ` + ld_res(${i})` : ''}`;
  return p.accumulate ? `out[${i}] += ${v}${a}${add};` : `out[${i}] = ${v}${a}${add};`;
}

/** Bindings in order: a, b, then the bias and the residual where present, then out. */
function bindings(p: GemmParams): string {
  const extra = [p.bias ? 'bias' : '', p.residual ? 'res' : ''].filter(Boolean);
  const decl = extra.map((name, i) => input(name, 2 + i, name === 'bias' ? p.bias! : p.residual!));
  return [input('a', 0, p.dtypeA), input('b', 1, p.dtypeB), ...decl, output('out', 2 + extra.length)].join('\n');
}

/** WGSL for the element index of A's (row i of op(A), col k) inside its matrix, and likewise for B. */
function aIndex(p: GemmParams, m: string, k: string): string {
  return p.transA ? `${k} * ${p.M}u + ${m}` : `${m} * ${p.K}u + ${k}`;
}
function bIndex(p: GemmParams, k: string, n: string): string {
  return p.transB ? `${n} * ${p.K}u + ${k}` : `${k} * ${p.N}u + ${n}`;
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
 * k are loaded as zeros and never stored, so M, N, K need not be multiples of the tile (the
 * checks are generated only where an extent is ragged). Summed batch dims repeat the K loop into
 * the same registers. Workgroups are numbered linearly over (batch, tile row, tile column),
 * column fastest so neighbours share A tiles, and that number is spread over an x*y grid when it
 * exceeds 65535. The epilogue scales, adds the bias and a residual, or adds into the output.
 */
const gemmSource = memoSource('gemm', (p: GemmParams) => {
  const tilesN = Math.ceil(p.N / TN);
  const tilesM = Math.ceil(p.M / TM);
  const total = tilesN * tilesM * prod(p.batch.shape);
  const raggedA = p.M % TM !== 0 || p.K % TK !== 0;
  const raggedB = p.N % TN !== 0 || p.K % TK !== 0;
  // Staging: element e (< 1024) of a slice maps to (row, k) so that lanes walk the contiguous axis.
  const stageA = p.transA
    ? `let k = e / ${TM}u; let m = e % ${TM}u;`
    : `let m = e / ${TK}u; let k = e % ${TK}u;`;
  const stageB = p.transB
    ? `let n = e / ${TK}u; let k = e % ${TK}u;`
    : `let k = e / ${TN}u; let n = e % ${TN}u;`;
  const loadA = `ld_a(aOff + ${aIndex(p, 'gm', 'gk')})`;
  const loadB = `ld_b(bOff + ${bIndex(p, 'gk', 'gn')})`;
  const acc = [0, 1, 2, 3];
  return `${bindings(p)}
var<workgroup> As: array<f32, ${TK * PITCH}>;
var<workgroup> Bs: array<f32, ${TK * PITCH}>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = wid.x + wid.y * nwg.x;
  if (id >= ${total}u) { return; }
  let n0 = (id % ${tilesN}u) * ${TN}u;
  let m0 = ((id / ${tilesN}u) % ${tilesM}u) * ${TM}u;
  let z = id / ${tilesN * tilesM}u;
  let tx = lid3.x;
  let ty = lid3.y;
  let aBase = ${broadcastIndex('z', p.batch.shape, p.batch.a)};
  let bBase = ${broadcastIndex('z', p.batch.shape, p.batch.b)};
${acc.map((i) => `  var acc${i} = vec4<f32>(0.0);`).join('\n')}
  for (var r = 0u; r < ${prod(p.sum.shape)}u; r++) {
    let aOff = aBase + ${broadcastIndex('r', p.sum.shape, p.sum.a)};
    let bOff = bBase + ${broadcastIndex('r', p.sum.shape, p.sum.b)};
    for (var k0 = 0u; k0 < ${p.K}u; k0 += ${TK}u) {
      for (var s = 0u; s < 4u; s++) {
        let e = lid + s * 256u;
        {
          ${stageA}
          let gm = m0 + m;
          let gk = k0 + k;
          ${raggedA ? `var v = 0.0;
          if (gm < ${p.M}u && gk < ${p.K}u) { v = ${loadA}; }` : `let v = ${loadA};`}
          As[k * ${PITCH}u + m] = v;
        }
        {
          ${stageB}
          let gn = n0 + n;
          let gk = k0 + k;
          ${raggedB ? `var v = 0.0;
          if (gn < ${p.N}u && gk < ${p.K}u) { v = ${loadB}; }` : `let v = ${loadB};`}
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
  let oBase = z * ${p.M * p.N}u;
${acc
  .map(
    (i) => `  {
    let m = m0 + ty + ${16 * i}u;
    if (m < ${p.M}u) {
      for (var j = 0u; j < 4u; j++) {
        let n = n0 + tx + 16u * j;
        if (n < ${p.N}u) { ${store(p, `acc${i}[j]`, `oBase + m * ${p.N}u + n`)} }
      }
    }
  }`,
  )
  .join('\n')}
}`;
});

/** The tiled GEMM dispatch for `p` (see the tiling comment above). */
export function gemmKernel(p: GemmParams): Kernel {
  const groups = Math.ceil(p.N / TN) * Math.ceil(p.M / TM) * prod(p.batch.shape);
  return { name: 'matmul', source: gemmSource(p), workgroups: grid(groups), ...cost(p) };
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
      acc += ld_a(aOff + ${aIndex(p, 'm', 'k')}) * ld_b(bOff + ${bIndex(p, 'k', 'n')});
    }
  }
  ${store(p, 'acc', 'gi')}
}`;
});

/** One thread per output element, no tiling: same semantics as `gemmKernel`. */
export function matmulNaiveKernel(p: GemmParams): Kernel {
  const n = prod(p.batch.shape) * p.M * p.N;
  return { name: 'matmul_naive', source: naiveSource(p), workgroups: grid(Math.ceil(n / NAIVE_WG)), ...cost(p) };
}
