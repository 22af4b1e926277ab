// Batched matmul and linear (PyTorch weight layout), forward and backward on one tiled GEMM kernel.
import { needsGrad, record, type BackwardRule } from '../autograd.js';
import { gemmKernel, matmulNaiveKernel, type GemmParams } from '../kernels/matmul.js';
import { reduceKernel } from '../kernels/reduce.js';
import { numel, type Tensor } from '../tensor.js';
import { broadcastShapes, broadcastStrides, check, emptyLike, launch } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    matmul: { a: Tensor | null; b: Tensor | null; aShape: readonly number[]; bShape: readonly number[]; transA: boolean; transB: boolean };
    linear: { x: Tensor | null; w: Tensor | null; xShape: readonly number[]; wShape: readonly number[]; hasBias: boolean; scale: number };
  }
}

/** Which operands `matmul` reads transposed (their last two dims swapped). */
export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

interface Plan {
  params: GemmParams;
  outShape: number[];
}

/**
 * Plan op(x) @ op(y) for x [...xb, r, c] and y [...yb, r, c] with batch dims broadcast to S. The
 * result has batch shape `target` (S by default); dims of S that `target` lacks or holds at 1 are
 * summed (the gradient of a broadcast operand). Two foldings turn batches into one bigger GEMM:
 * a shared y folds x's batch into M, and a fully summed batch over untransposed-contiguous rows
 * folds into K (dW = dY^T X over all rows).
 */
function plan(xs: readonly number[], ys: readonly number[], tx: boolean, ty: boolean, target?: readonly number[]): Plan {
  check(xs.length >= 2 && ys.length >= 2, () => `matmul: operands need 2 or more dims, got [${xs.join(', ')}] and [${ys.join(', ')}]`);
  const [xr, xc] = xs.slice(-2) as [number, number];
  const [yr, yc] = ys.slice(-2) as [number, number];
  const [M, K] = tx ? [xc, xr] : [xr, xc];
  const [Ky, N] = ty ? [yc, yr] : [yr, yc];
  check(K === Ky, () => `matmul: inner dims differ: [${xs.join(', ')}]${tx ? '^T' : ''} x [${ys.join(', ')}]${ty ? '^T' : ''}`);
  const xb = xs.slice(0, -2);
  const yb = ys.slice(0, -2);
  const S = broadcastShapes(xb, yb);
  const tgt = target ?? S;
  const lead = S.length - tgt.length;
  check(lead >= 0, () => `matmul: gradient batch [${tgt.join(', ')}] has more dims than [${S.join(', ')}]`);
  const kept = S.map((d, i) => {
    const t = i < lead ? 1 : tgt[i - lead]!;
    check(t === d || t === 1, () => `matmul: batch [${tgt.join(', ')}] does not reduce from [${S.join(', ')}]`);
    return t;
  });
  const summed = S.map((d, i) => (kept[i] === d ? 1 : d));
  const nS = numel(S);
  const outShape = [...tgt, M, N];
  const base = { N, transA: tx, transB: ty, dtypeA: 'f32', dtypeB: 'f32', bias: null } as const;
  const none = { shape: [], a: [], b: [] };
  if (nS > 1 && numel(yb) === 1 && !tx && numel(kept) === nS) {
    return { params: { ...base, M: nS * M, K, batch: none, sum: none }, outShape };
  }
  if (nS > 1 && numel(kept) === 1 && tx && !ty && numel(xb) === nS && numel(yb) === nS) {
    return { params: { ...base, M, K: nS * K, batch: none, sum: none }, outShape };
  }
  const sa = broadcastStrides(xb, S).map((s) => s * xr * xc);
  const sb = broadcastStrides(yb, S).map((s) => s * yr * yc);
  return { params: { ...base, M, K, batch: { shape: kept, a: sa, b: sb }, sum: { shape: summed, a: sa, b: sb } }, outShape };
}

/** Run a planned GEMM over x, y (and bias), scaled by alpha; returns a fresh f32 tensor. */
function run(pl: Plan, x: Tensor, y: Tensor, bias?: Tensor, naive = false, alpha = 1): Tensor {
  const params: GemmParams = { ...pl.params, dtypeA: x.dtype, dtypeB: y.dtype, bias: bias ? bias.dtype : null, ...(alpha !== 1 ? { alpha } : {}) };
  const out = emptyLike(x, pl.outShape);
  launch((naive ? matmulNaiveKernel : gemmKernel)(params), bias ? [x, y, bias] : [x, y], [out]);
  return out;
}

/** op(x) @ op(y), summing batch dims down to `target` (backward helper, no autograd). */
function gemm(x: Tensor, y: Tensor, tx: boolean, ty: boolean, target?: readonly number[]): Tensor {
  return run(plan(x.shape, y.shape, tx, ty, target), x, y);
}

// ---- matmul ------------------------------------------------------------------------------------

/**
 * Batched matrix product: a [...batch, M, K] (or [..., K, M] with `transA`) times b [...batch, K, N]
 * (or [..., N, K] with `transB`), batch dims broadcast, giving f32 [...batch, M, N]. Either operand
 * may be stored f16.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = !!opts.transA;
  const transB = !!opts.transB;
  const out = run(plan(a.shape, b.shape, transA, transB), a, b);
  // dA needs only b and dB needs only a: keep just what a requested gradient reads.
  const keepA = needsGrad(b) ? a : null;
  const keepB = needsGrad(a) ? b : null;
  const held = [keepA, keepB].filter((t): t is Tensor => t !== null);
  record('matmul', [a, b], [out], { a: keepA, b: keepB, aShape: a.shape, bShape: b.shape, transA, transB }, held);
  return out;
}

/*
 * C = op(A) op(B), gC [...S, M, N]:
 *   dA  [..., M, K] = gC op(B)^T          (transA: dA [..., K, M] = op(B) gC^T)
 *   dB  [..., K, N] = op(A)^T gC          (transB: dB [..., N, K] = gC^T op(A))
 * each summed over the batch dims its operand was broadcast along.
 */
const matmulBackward: BackwardRule<'matmul'> = ({ a, b, aShape, bShape, transA, transB }, [g], needs) => {
  const aBatch = aShape.slice(0, -2);
  const bBatch = bShape.slice(0, -2);
  const dA = !needs[0] ? null : transA ? gemm(b!, g!, transB, true, aBatch) : gemm(g!, b!, false, !transB, aBatch);
  const dB = !needs[1] ? null : transB ? gemm(g!, a!, true, transA, bBatch) : gemm(a!, g!, !transA, false, bBatch);
  return [dA, dB];
};

/** `matmul` on the naive one-thread-per-output kernel (forward only, for benchmark ratios). */
export function matmulNaive(a: Tensor, b: Tensor, opts: MatmulOptions & { bias?: Tensor } = {}): Tensor {
  return run(plan(a.shape, b.shape, !!opts.transA, !!opts.transB), a, b, opts.bias, true);
}

// ---- linear ------------------------------------------------------------------------------------

/**
 * y = scale * x w^T + bias with PyTorch's layout: x [..., in], w [out, in] (often frozen f16),
 * bias [out]; y is f32 [..., out]. One GEMM over all leading rows, reading w transposed in place,
 * with the scale (a LoRA's alpha / rank) and the bias fused into its epilogue.
 */
export function linear(x: Tensor, w: Tensor, bias?: Tensor, scale = 1): Tensor {
  check(Number.isFinite(scale), () => `linear: scale must be finite, got ${scale}`);
  check(w.rank === 2, () => `linear: weight must be [out, in], got [${w.shape.join(', ')}]`);
  const [outF, inF] = w.shape as [number, number];
  check(x.rank >= 1 && x.shape[x.rank - 1] === inF, () => `linear: input [${x.shape.join(', ')}] does not end in ${inF}`);
  check(!bias || (bias.rank === 1 && bias.shape[0] === outF), () => `linear: bias must be [${outF}]`);
  const rows = x.size / inF;
  const pl = plan([rows, inF], w.shape, false, true);
  pl.outShape = [...x.shape.slice(0, -1), outF];
  const out = run(pl, x, w, bias, false, scale);
  const keepX = needsGrad(w) ? x : null;
  const keepW = needsGrad(x) ? w : null;
  const held = [keepX, keepW].filter((t): t is Tensor => t !== null);
  record('linear', [x, w, bias ?? null], [out], { x: keepX, w: keepW, xShape: x.shape, wShape: w.shape, hasBias: !!bias, scale }, held);
  return out;
}

/*
 * y [R, out] = s x [R, in] w^T + bias, with R all leading dims of x flattened, gY [R, out]:
 *   dX    [R, in]   = s gY w          (one GEMM, no transposes, s in its epilogue)
 *   dW    [out, in] = s gY^T x        (one GEMM, contraction over all R rows)
 *   dBias [out]     = sum_R gY
 */
const linearBackward: BackwardRule<'linear'> = ({ x, w, xShape, wShape, scale }, [g], needs) => {
  const [outF, inF] = wShape as [number, number];
  const rows = numel(xShape) / inF;
  let dX: Tensor | null = null;
  if (needs[0]) {
    const pl = plan([rows, outF], wShape, false, false);
    pl.outShape = [...xShape];
    dX = run(pl, g!, w!, undefined, false, scale);
  }
  const dW = needs[1] ? run(plan([rows, outF], [rows, inF], true, false), g!, x!, undefined, false, scale) : null;
  let dBias: Tensor | null = null;
  if (needs[2]) {
    dBias = emptyLike(g!, [outF]);
    launch(reduceKernel({ inShape: [rows, outF], axes: [0], dtype: g!.dtype, scale: 1 }), [g!], [dBias]);
  }
  return [dX, dW, dBias];
};

export const matmulRules = { matmul: matmulBackward, linear: linearBackward };
