// Batched matmul and linear (PyTorch weight layout), forward and backward on one tiled GEMM kernel.
import { activeTape, needsGrad, record, type BackwardRule } from '../autograd.js';
import { splitSumKernel } from '../kernels/conv2d.js';
import { dropScale, keepThreshold } from '../kernels/dropout.js';
import { gemmKernel, gemmPairKernel, gemmTiling, matmulNaiveKernel, type GemmDrop, type GemmParams, type GemmTerm } from '../kernels/matmul.js';
import { reduceOn } from './reduce.js';
import type { Backend, GpuBackend, MetaBackend } from '../backend.js';
import { empty, numel, type Tensor } from '../tensor.js';
import { broadcastShapes, broadcastStrides, check, emptyLike, launch, sameShape } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    matmul: { a: Tensor | null; b: Tensor | null; aShape: readonly number[]; bShape: readonly number[]; transA: boolean; transB: boolean };
    linear: { x: Tensor | null; w: Tensor | null; xShape: readonly number[]; wShape: readonly number[]; hasBias: boolean; scale: number };
  }
}

/** Which operands `matmul` reads transposed (their last two dims swapped), and what its epilogue adds. */
export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /** Added to the product in the GEMM's epilogue (one dispatch); exactly the output's shape. Its gradient is the output's. */
  residual?: Tensor;
}

/**
 * `dropout(t, p, seed)` folded into a GEMM: applied to A or B as it is read, or to the product
 * (before alpha and any add into the output), with the separate op's mask bit for bit. `offset`:
 * the mask index of the tensor's first element, for a slab of a tensor the mask covers whole.
 */
export interface FoldedDropout {
  on: 'a' | 'b' | 'out' | 'a2';
  p: number;
  seed: number;
  offset?: number;
}

/** What a GEMM's epilogue does besides storing: scale, bias, residual, or add into an existing output. */
interface Epilogue {
  drop?: FoldedDropout;
  bias?: Tensor;
  alpha?: number;
  residual?: Tensor;
  /** Add into this tensor (its shape is the output's) instead of allocating one. */
  into?: Tensor;
  /** A second product summed in the same GEMM (`PlusTerm`). */
  plus?: PlusTerm;
}

/**
 * A second product that `linearPlus` and `matmulPlus` sum into their GEMM's accumulators:
 * scale * drop?(op(a)) @ op(b), op(a) [M, K2] over the rows of the first product (a's leading
 * dims flattened), op(b) [K2, N]. One dispatch instead of a GEMM adding into another's output.
 */
export interface PlusTerm {
  a: Tensor;
  b: Tensor;
  transA?: boolean;
  transB?: boolean;
  scale?: number;
  /** Dropout on a as it is read (the mask indexed by a's elements, from `offset`). */
  drop?: Omit<FoldedDropout, 'on'>;
}

/** The kernel's form of a second term for a call with M rows and N columns, checking shapes. */
function gemmTerm(pl: GemmCall, t: PlusTerm): GemmTerm {
  const { M, N } = pl.params;
  check(!pl.params.batch.shape.length && !pl.params.sum.shape.length, () => 'matmul: a second term needs an unbatched GEMM');
  const last = t.a.shape[t.a.rank - 1]!;
  const [ar, ac] = [t.a.size / last, last];
  const [am, K] = t.transA ? [ac, ar] : [ar, ac];
  check(t.b.rank === 2, () => `matmul: a second term's b must be 2-D, got [${t.b.shape.join(', ')}]`);
  const [bk, bn] = t.transB ? [t.b.shape[1]!, t.b.shape[0]!] : [t.b.shape[0]!, t.b.shape[1]!];
  check(am === M && bk === K && bn === N, () => `matmul: second term [${t.a.shape.join(', ')}] x [${t.b.shape.join(', ')}] does not make [${M}, ${N}]`);
  return { K, transA: !!t.transA, transB: !!t.transB, dtypeA: t.a.dtype, dtypeB: t.b.dtype, ...(t.scale !== undefined && t.scale !== 1 ? { scale: t.scale } : {}) };
}

interface GemmCall {
  params: GemmParams;
  outShape: number[];
}

/**
 * The GEMM call for op(x) @ op(y), x [...xb, r, c] and y [...yb, r, c] with batch dims broadcast to S. The
 * result has batch shape `target` (S by default); dims of S that `target` lacks or holds at 1 are
 * summed (the gradient of a broadcast operand). Two foldings turn batches into one bigger GEMM:
 * a shared y folds x's batch into M, and a fully summed batch over untransposed-contiguous rows
 * folds into K (dW = dY^T X over all rows).
 */
function gemmCall(xs: readonly number[], ys: readonly number[], tx: boolean, ty: boolean, target?: readonly number[]): GemmCall {
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

/** A GEMM call made concrete: the kernel's parameters, its inputs in binding order after x and y, and its output. */
interface Prepared {
  params: GemmParams;
  epi: Tensor[];
  out: Tensor;
  drop?: FoldedDropout;
}

/** The parameters and tensors of a GEMM call over x, y with epilogue `e` (a fresh f32 output unless `e.into`). */
function prepare(pl: GemmCall, x: Tensor, y: Tensor, e: Epilogue): Prepared {
  const { bias, residual, into, alpha = 1, plus } = e;
  const drop = plus?.drop ? { ...plus.drop, on: 'a2' as const } : e.drop;
  check(!(plus?.drop && e.drop), () => 'matmul: one folded dropout per GEMM');
  for (const [t, what] of [[residual, 'residual'], [into, 'output']] as const) {
    check(!t || sameShape(t.shape, pl.outShape), () => `matmul: ${what} [${t!.shape.join(', ')}] is not the output's shape [${pl.outShape.join(', ')}]`);
  }
  check(!into || into.dtype === 'f32', () => 'matmul: can only add into an f32 tensor');
  const params: GemmParams = {
    ...pl.params,
    dtypeA: x.dtype,
    dtypeB: y.dtype,
    bias: bias ? bias.dtype : null,
    ...(alpha !== 1 ? { alpha } : {}),
    ...(residual ? { residual: residual.dtype } : {}),
    ...(into ? { accumulate: true } : {}),
    ...(drop ? { drop: gemmDrop(drop) } : {}),
    ...(plus ? { second: gemmTerm(pl, plus) } : {}),
  };
  const out = into ?? emptyLike(x, pl.outShape);
  const epi = [...(plus ? [plus.a, plus.b] : []), ...(bias ? [bias] : []), ...(residual ? [residual] : [])];
  return { params, epi, out, ...(drop ? { drop } : {}) };
}

/** Run a GEMM call over x, y with epilogue `e`; returns the output (a fresh f32 tensor unless `e.into`). */
function run(pl: GemmCall, x: Tensor, y: Tensor, e: Epilogue = {}, naive = false): Tensor {
  const { params, epi, out, drop } = prepare(pl, x, y, e);
  const { residual, into, plus } = e;
  if (naive) {
    launch(matmulNaiveKernel(params), [x, y, ...epi], [out]);
    return out;
  }
  params.f16 = nativeF16(x.backend);
  const tiling = gemmTiling(params.M, params.N, params.K, numel(params.batch.shape));
  const { tile } = tiling;
  // A mask on the product belongs to the epilogue, which a split GEMM leaves to the split-sum.
  const splits = drop?.on === 'out' || plus || params.transOut ? 1 : tiling.splits;
  if (splits === 1) {
    launch(gemmKernel({ ...params, tile }), [x, y, ...epi], [out]);
    return out;
  }
  // Split K: partial sums into a workspace, which the split-sum pass adds up with the epilogue.
  const ws = empty(x.backend, [splits, out.size]);
  launch(gemmKernel({ ...params, bias: null, residual: undefined, accumulate: undefined, tile, splits }), [x, y], [ws]);
  const sp = { size: out.size, splits, bias: params.bias, plane: 1, channels: params.N, ...(residual ? { residual: residual.dtype } : {}), ...(into ? { accumulate: true } : {}) };
  launch(splitSumKernel(sp), [ws, ...epi], [out]);
  ws.dispose();
  return out;
}

/** The kernel's form of a folded dropout. */
function gemmDrop(d: FoldedDropout): GemmDrop {
  check(d.p > 0 && d.p < 1, () => `matmul: folded dropout probability must be in (0, 1), got ${d.p}`);
  return { on: d.on, seed: d.seed >>> 0, threshold: keepThreshold(d.p), scale: dropScale(d.p), offset: d.offset ?? 0 };
}

/**
 * Whether kernels on `b` may read f16 storage natively: a GPU device with shader-f16 (checked once
 * per backend), or a meta device standing for one (so precompiling records the f16 kernels).
 */
export function nativeF16(b: Backend): boolean {
  return (b as GpuBackend | MetaBackend).nativeF16;
}

/** Refuse an in-place add the tape could see: it would change a tensor some backward may read. */
function checkUntaped(out: Tensor, ...xs: Tensor[]): void {
  check(!activeTape() || ![out, ...xs].some(needsGrad), () => 'matmulInto/linearInto: not differentiable; call it under noGrad or in a backward rule');
}

/**
 * drop(op(a) @ op(b)) (or the product of a masked operand, per `drop.on`) in one GEMM, f32 out.
 * Not recorded, like `matmulInto`: for backward rules and noGrad code.
 */
export function matmulDropped(a: Tensor, b: Tensor, drop: FoldedDropout, opts: Omit<MatmulOptions, 'residual'> = {}): Tensor {
  checkUntaped(a, b);
  return run(gemmCall(a.shape, b.shape, !!opts.transA, !!opts.transB), a, b, { drop });
}

/** op(x) @ op(y), summing batch dims down to `target` (backward helper, no autograd). */
function gemm(x: Tensor, y: Tensor, tx: boolean, ty: boolean, target?: readonly number[]): Tensor {
  return run(gemmCall(x.shape, y.shape, tx, ty, target), x, y);
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
  const out = run(gemmCall(a.shape, b.shape, transA, transB), a, b, { residual: opts.residual });
  // dA needs only b and dB needs only a: keep just what a requested gradient reads.
  const keepA = needsGrad(b) ? a : null;
  const keepB = needsGrad(a) ? b : null;
  const held = [keepA, keepB].filter((t): t is Tensor => t !== null);
  record('matmul', [a, b, opts.residual ?? null], [out], { a: keepA, b: keepB, aShape: a.shape, bShape: b.shape, transA, transB }, held);
  return out;
}

/**
 * out += alpha * op(a) @ op(b) in one GEMM whose epilogue reads and rewrites `out` (f32 [...T, M, N]);
 * batch dims of the product that T lacks or holds at 1 are summed (as a broadcast operand's
 * gradient is). Not recorded: for backward rules (accumulating a gradient) and noGrad code.
 */
export function matmulInto(out: Tensor, a: Tensor, b: Tensor, opts: Omit<MatmulOptions, 'residual'> & { alpha?: number; drop?: FoldedDropout } = {}): void {
  checkUntaped(out, a, b);
  check(Number.isFinite(opts.alpha ?? 1), () => `matmulInto: alpha must be finite, got ${opts.alpha}`);
  run(gemmCall(a.shape, b.shape, !!opts.transA, !!opts.transB, out.shape.slice(0, -2)), a, b, { into: out, alpha: opts.alpha, ...(opts.drop ? { drop: opts.drop } : {}) });
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
  return [dA, dB, needs[2] ? g! : null];
};

/** `matmul` on the naive one-thread-per-output kernel (forward only, for benchmark ratios). */
export function matmulNaive(a: Tensor, b: Tensor, opts: MatmulOptions & { bias?: Tensor } = {}): Tensor {
  return run(gemmCall(a.shape, b.shape, !!opts.transA, !!opts.transB), a, b, { bias: opts.bias }, true);
}

// ---- linear ------------------------------------------------------------------------------------

/** The GEMM call of y = x w^T over all leading rows of x, checking shapes. */
function linearCall(x: Tensor, w: Tensor, scale: number, bias?: Tensor): GemmCall {
  check(Number.isFinite(scale), () => `linear: scale must be finite, got ${scale}`);
  check(w.rank === 2, () => `linear: weight must be [out, in], got [${w.shape.join(', ')}]`);
  const [outF, inF] = w.shape as [number, number];
  check(x.rank >= 1 && x.shape[x.rank - 1] === inF, () => `linear: input [${x.shape.join(', ')}] does not end in ${inF}`);
  check(!bias || (bias.rank === 1 && bias.shape[0] === outF), () => `linear: bias must be [${outF}]`);
  const pl = gemmCall([x.size / inF, inF], w.shape, false, true);
  pl.outShape = [...x.shape.slice(0, -1), outF];
  return pl;
}

/**
 * y = scale * x w^T + bias (+ residual) with PyTorch's layout: x [..., in], w [out, in] (often
 * frozen f16), bias [out], residual [..., out]; y is f32 [..., out]. One GEMM over all leading
 * rows, reading w transposed in place, with the scale (a LoRA's alpha / rank), the bias and the
 * residual (a skip connection, or the base layer's output under a LoRA up-projection) fused into
 * its epilogue. The residual's gradient is y's.
 */
export function linear(x: Tensor, w: Tensor, bias?: Tensor, scale = 1, residual?: Tensor): Tensor {
  const out = run(linearCall(x, w, scale, bias), x, w, { bias, alpha: scale, residual });
  recordLinear(x, w, bias, residual, out, scale);
  return out;
}

/** Check the shapes of y = scale * x w^T + bias as `linear` does (for callers that run its GEMM themselves, `lowRankLinears`). */
export function checkLinear(x: Tensor, w: Tensor, bias?: Tensor, scale = 1): void {
  linearCall(x, w, scale, bias);
}

/** Record `out` = linear(x, w, bias, scale, residual) on the tape, holding what its backward reads (for a GEMM run elsewhere, paired). */
export function recordLinear(x: Tensor, w: Tensor, bias: Tensor | undefined, residual: Tensor | undefined, out: Tensor, scale = 1): void {
  const keepX = needsGrad(w) ? x : null;
  const keepW = needsGrad(x) ? w : null;
  const held = [keepX, keepW].filter((t): t is Tensor => t !== null);
  record('linear', [x, w, bias ?? null, residual ?? null], [out], { x: keepX, w: keepW, xShape: x.shape, wShape: w.shape, hasBias: !!bias, scale }, held);
}

/**
 * y = x w^T + bias + residual + `plus` (shapes as `linear`) in one GEMM: a LoRA layer's base and
 * up projection (plus = s·drop(h) up^T). Not recorded, like `matmulInto`.
 */
export function linearPlus(x: Tensor, w: Tensor, plus: PlusTerm, bias?: Tensor, residual?: Tensor): Tensor {
  checkUntaped(x, w, plus.a, plus.b);
  return run(linearCall(x, w, 1, bias), x, w, { bias, residual, plus });
}

/**
 * a @ b + `plus` in one GEMM, a [R, K] and b [K, N] (no batch dims), added into `into` when given:
 * a LoRA layer's input gradient gY w + s·gH down. Not recorded, like `matmulInto`.
 */
export function matmulPlus(a: Tensor, b: Tensor, plus: PlusTerm, into?: Tensor): Tensor {
  checkUntaped(a, b, plus.a, plus.b, ...(into ? [into] : []));
  return run(gemmCall(a.shape, b.shape, false, false), a, b, { plus, ...(into ? { into } : {}) });
}

/** One GEMM of `matmulPair`: (into +=) alpha * op(a) @ op(b) (+ plus), batch dims summed down to `into`'s as `matmulInto` does. */
export interface PairGemm {
  a: Tensor;
  b: Tensor;
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  drop?: FoldedDropout;
  plus?: PlusTerm;
  into?: Tensor;
  /** Added in the epilogue, shaped as the output (a gradient's prior from its input's other uses). */
  residual?: Tensor;
  /** A bias [N] added in the epilogue (a linear layer's). */
  bias?: Tensor;
  /** The output's shape when not the GEMM's [..., M, N] (same element count: a linear layer's [..., out]). */
  shape?: readonly number[];
  /** Store the product transposed, [..., N, M] (`GemmParams.transOut`): a channel-major output. */
  transOut?: boolean;
}

/**
 * Two independent GEMMs in one dispatch (neither reads the other's output): a LoRA layer's
 * backward pairs gH = drop(gY up) with dUp += s·gY^T h, and dX = gY w + s·gH down with dDown += s·gH^T x.
 * Both run on the first's tile, unsplit. Where one is null, or the pair would bind more storage
 * buffers than the device allows (`Backend.maxStorageBuffers`), they run alone. Returns the
 * outputs. Not recorded, like `matmulInto`.
 */
export function matmulPair(g0: PairGemm | null, g1: PairGemm | null): [Tensor | null, Tensor | null] {
  const opts = (g: PairGemm): Epilogue => ({
    ...(g.alpha !== undefined ? { alpha: g.alpha } : {}),
    ...(g.drop ? { drop: g.drop } : {}),
    ...(g.plus ? { plus: g.plus } : {}),
    ...(g.into ? { into: g.into } : {}),
    ...(g.residual ? { residual: g.residual } : {}),
    ...(g.bias ? { bias: g.bias } : {}),
  });
  const call = (g: PairGemm) => {
    checkUntaped(g.a, g.b, ...(g.into ? [g.into] : []));
    const pl = gemmCall(g.a.shape, g.b.shape, !!g.transA, !!g.transB, g.into?.shape.slice(0, -2));
    if (g.transOut) {
      pl.params.transOut = true;
      pl.outShape = [...pl.outShape.slice(0, -2), pl.params.N, pl.params.M];
    }
    if (g.shape) {
      check(numel(g.shape) === numel(pl.outShape), () => `matmulPair: output shape [${g.shape!.join(', ')}] does not hold [${pl.outShape.join(', ')}]`);
      pl.outShape = [...g.shape];
    }
    return pl;
  };
  if (!g0 || !g1) {
    const g = (g0 ?? g1)!;
    const out = run(call(g), g.a, g.b, opts(g));
    return g0 ? [out, null] : [null, out];
  }
  // A device that binds fewer storage buffers than the pair runs the two alone (the same products).
  if (pairBindings(g0) + pairBindings(g1) > g0.a.backend.maxStorageBuffers) return [matmulPair(g0, null)[0], matmulPair(null, g1)[1]];
  const [p0, p1] = [g0, g1].map((g) => {
    const pr = prepare(call(g), g.a, g.b, opts(g));
    pr.params.f16 = nativeF16(g.a.backend);
    return pr;
  }) as [Prepared, Prepared];
  const { tile } = gemmTiling(p0.params.M, p0.params.N, p0.params.K, numel(p0.params.batch.shape));
  launch(gemmPairKernel({ ...p0.params, tile }, { ...p1.params, tile }), [g0.a, g0.b, ...p0.epi, p0.out, g1.a, g1.b, ...p1.epi], [p1.out]);
  return [p0.out, p1.out];
}

/**
 * Most storage bindings a dispatch of `matmulPairs` takes: what Chrome gives on Apple GPUs (10;
 * WebGPU's default is 8, SwiftShader gives 12, lavapipe 16), and what `lowRankBackward`'s pairs
 * already bind at most (9). A device with fewer runs the pairs that pass its limit alone (`matmulPair`).
 */
export const MAX_PAIR_BINDINGS = 10;

/** Storage bindings one GEMM of a pair takes: a, b, the second term's two, the bias, the residual and the output. */
function pairBindings(g: PairGemm): number {
  return 3 + (g.plus ? 2 : 0) + (g.bias ? 1 : 0) + (g.residual ? 1 : 0);
}

/**
 * Independent GEMMs (none reads another's output), two per dispatch (`matmulPair`) wherever the
 * pair's bindings fit `MAX_PAIR_BINDINGS` and the device's limit, in order; the outputs in the
 * same order. Each product is computed exactly as alone. Not recorded, like `matmulInto`.
 */
export function matmulPairs(gs: readonly PairGemm[]): Tensor[] {
  const out: Tensor[] = [];
  const limit = Math.min(MAX_PAIR_BINDINGS, gs[0]?.a.backend.maxStorageBuffers ?? 0);
  for (let i = 0; i < gs.length; ) {
    const [g0, g1] = [gs[i]!, gs[i + 1]];
    const two = !!g1 && pairBindings(g0) + pairBindings(g1) <= limit;
    const [y0, y1] = matmulPair(g0, two ? g1 : null);
    out.push(y0!);
    if (two) out.push(y1!);
    i += two ? 2 : 1;
  }
  return out;
}

/** out += scale * drop?(x) w^T in one GEMM (shapes as `linear`; out f32 [..., out]). Not recorded, like `matmulInto`. */
export function linearInto(out: Tensor, x: Tensor, w: Tensor, scale = 1, dropX?: Omit<FoldedDropout, 'on'>): void {
  checkUntaped(out, x, w);
  run(linearCall(x, w, scale), x, w, { into: out, alpha: scale, ...(dropX ? { drop: { ...dropX, on: 'a' as const } } : {}) });
}

/*
 * y [R, out] = s x [R, in] w^T + bias, with R all leading dims of x flattened, gY [R, out]:
 *   dX    [R, in]   = s gY w          (one GEMM, no transposes, s in its epilogue)
 *   dW    [out, in] = s gY^T x        (one GEMM, contraction over all R rows)
 *   dBias [out]     = sum_R gY
 *   dResidual       = gY
 */
const linearBackward: BackwardRule<'linear'> = ({ x, w, xShape, wShape, scale }, [g], needs) => {
  const [outF, inF] = wShape as [number, number];
  const rows = numel(xShape) / inF;
  let dX: Tensor | null = null;
  if (needs[0]) {
    const pl = gemmCall([rows, outF], wShape, false, false);
    pl.outShape = [...xShape];
    dX = run(pl, g!, w!, { alpha: scale });
  }
  const dW = needs[1] ? run(gemmCall([rows, outF], [rows, inF], true, false), g!, x!, { alpha: scale }) : null;
  let dBias: Tensor | null = null;
  if (needs[2]) {
    dBias = emptyLike(g!, [outF]);
    launch(reduceOn(g!.backend, { inShape: [rows, outF], axes: [0], dtype: g!.dtype, scale: 1 }), [g!], [dBias]);
  }
  return [dX, dW, dBias, needs[3] ? g! : null];
};

export const matmulRules = { matmul: matmulBackward, linear: linearBackward };
