// 2-D convolution as an implicit GEMM (forward, dX, dW, dBias, never an im2col buffer) and nearest 2x upsampling.
import { activeTape, needsGrad, record, type BackwardRule } from '../autograd.js';
import {
  conv2dNaiveKernel,
  convGemmKernel,
  convGemmShape,
  convTile,
  dxPhases,
  splitK,
  splitSumKernel,
  upsampleKernel,
  withSplits,
  type ConvDTypes,
  type ConvGeometry,
  type ConvPass,
} from '../kernels/conv2d.js';
import { reduceOn } from './reduce.js';
import { empty, type Tensor } from '../tensor.js';
import { nativeF16 } from './matmul.js';
import { check, emptyLike, launch, sameShape } from './util.js';

export type { ConvGeometry } from '../kernels/conv2d.js';

declare module '../autograd.js' {
  interface OpSaved {
    /** x only when w needs a gradient (dW reads it), w only when x does (dX reads it). */
    conv2d: { x: Tensor | null; w: Tensor | null; geo: ConvGeometry };
    upsample2x: { shape: readonly number[] };
  }
}

export interface Conv2dOptions {
  /** Same in both directions; 1 by default. */
  stride?: number;
  /** Zeros on every side, or [top, bottom, left, right] (SD's VAE encoder pads only bottom and right: [0, 1, 0, 1]). */
  padding?: number | readonly [number, number, number, number];
  /** Added to the output in the epilogue (a skip connection); exactly the output's shape. Its gradient is the output's. */
  residual?: Tensor;
}

/** Check shapes and work out every size the kernels bake in. */
export function convGeometry(xShape: readonly number[], wShape: readonly number[], o: Conv2dOptions = {}): ConvGeometry {
  check(xShape.length === 4 && wShape.length === 4, () => `conv2d: expected x [N, C, H, W] and w [O, C, kh, kw], got [${xShape.join(', ')}] and [${wShape.join(', ')}]`);
  const [N, C, H, W] = xShape as [number, number, number, number];
  const [O, Cw, kh, kw] = wShape as [number, number, number, number];
  check(C === Cw, () => `conv2d: input has ${C} channels, weight [${wShape.join(', ')}] expects ${Cw}`);
  const p = o.padding ?? 0;
  const [pt, pb, pl, pr] = typeof p === 'number' ? [p, p, p, p] : p;
  const stride = o.stride ?? 1;
  check([pt, pb, pl, pr, stride].every((v) => Number.isInteger(v) && v >= 0) && stride > 0, () => `conv2d: bad stride ${stride} or padding [${[pt, pb, pl, pr].join(', ')}]`);
  const OH = Math.floor((H + pt + pb - kh) / stride) + 1;
  const OW = Math.floor((W + pl + pr - kw) / stride) + 1;
  check(OH > 0 && OW > 0, () => `conv2d: a ${kh}x${kw} kernel leaves no output on input [${xShape.join(', ')}] with this padding`);
  return { N, C, H, W, O, kh, kw, stride, pt, pl, OH, OW };
}

/** What the split-sum adds when a forward is split: the bias (per channel of `plane` pixels), a residual, or out itself. */
interface SplitEpilogue {
  bias?: Tensor;
  plane: number;
  channels: number;
  residual?: Tensor;
  accumulate?: boolean;
}

/**
 * Run the dispatches of one pass into `out`: straight into it, or through a split-K workspace
 * that the split-sum pass adds up (with the forward's epilogue).
 */
function runPass(out: Tensor, splits: number, dispatch: (dst: Tensor) => void, e?: SplitEpilogue): void {
  if (splits === 1) return dispatch(out);
  const ws = empty(out.backend, [splits, out.size]);
  dispatch(ws);
  const p = {
    size: out.size,
    splits,
    bias: e?.bias ? e.bias.dtype : null,
    plane: e?.plane ?? 1,
    channels: e?.channels ?? 1,
    ...(e?.residual ? { residual: e.residual.dtype } : {}),
    ...(e?.accumulate ? { accumulate: true } : {}),
  };
  launch(splitSumKernel(p), [ws, ...(e?.bias ? [e.bias] : []), ...(e?.residual ? [e.residual] : [])], [out]);
  ws.dispose();
}

function dtypes(x: Tensor | null, w: Tensor | null, g: Tensor | null, bias?: Tensor, residual?: Tensor): ConvDTypes {
  return { x: x?.dtype ?? 'f32', w: w?.dtype ?? 'f32', g: g?.dtype ?? 'f32', bias: bias?.dtype ?? null, ...(residual ? { residual: residual.dtype } : {}) };
}

/** The forward's dispatches into y: one GEMM with the epilogue fused, or split-K slices and a split-sum that applies it. */
function forward(y: Tensor, x: Tensor, w: Tensor, g: ConvGeometry, bias?: Tensor, residual?: Tensor, accumulate = false): void {
  const pass: ConvPass = { kind: 'forward' };
  const { M, N, K } = convGemmShape(g, pass);
  const tile = convTile('forward', M, N);
  const split = splitK(M, N, K, tile);
  const whole = split.splits === 1;
  const [b, r] = whole ? [bias, residual] : [undefined, undefined];
  const ins = [x, w, ...(b ? [b] : []), ...(r ? [r] : [])];
  const params = { g, pass, dt: dtypes(x, w, null, b, r), split, tile, f16: nativeF16(x.backend), ...(whole && accumulate ? { accumulate: true } : {}) };
  runPass(y, split.splits, (dst) => launch(convGemmKernel(params), ins, [dst]), { bias, plane: g.OH * g.OW, channels: g.O, residual, accumulate });
}

/**
 * Cross-correlation of x [N, C, H, W] (f32) with w [O, C, kh, kw] (f32 or f16 storage) plus bias [O],
 * giving f32 [N, O, OH, OW] with OH = floor((H + top + bottom - kh) / stride) + 1 (likewise OW).
 */
export function conv2d(x: Tensor, w: Tensor, bias?: Tensor, opts: Conv2dOptions = {}): Tensor {
  const g = convGeometry(x.shape, w.shape, opts);
  check(!bias || (bias.rank === 1 && bias.shape[0] === g.O), () => `conv2d: bias must be [${g.O}], got [${bias!.shape.join(', ')}]`);
  const shape = [g.N, g.O, g.OH, g.OW];
  const r = opts.residual;
  check(!r || sameShape(r.shape, shape), () => `conv2d: residual [${r!.shape.join(', ')}] is not the output's shape [${shape.join(', ')}]`);
  const y = emptyLike(x, shape);
  forward(y, x, w, g, bias, r);
  const keepX = needsGrad(w) ? x : null;
  const keepW = needsGrad(x) ? w : null;
  const held = [keepX, keepW].filter((t): t is Tensor => t !== null);
  record('conv2d', [x, w, bias ?? null, r ?? null], [y], { x: keepX, w: keepW, geo: g }, held);
  return y;
}

/**
 * out += conv2d(x, w) in place (out f32 [N, O, OH, OW]), the add in the GEMM's epilogue (or the
 * split-sum's). Not recorded: for backward rules and noGrad code.
 */
export function conv2dInto(out: Tensor, x: Tensor, w: Tensor, opts: Omit<Conv2dOptions, 'residual'> = {}): void {
  check(!activeTape() || ![out, x, w].some(needsGrad), () => 'conv2dInto: not differentiable; call it under noGrad or in a backward rule');
  const g = convGeometry(x.shape, w.shape, opts);
  const shape = [g.N, g.O, g.OH, g.OW];
  check(out.dtype === 'f32' && sameShape(out.shape, shape), () => `conv2dInto: output must be f32 [${shape.join(', ')}], got [${out.shape.join(', ')}]`);
  forward(out, x, w, g, undefined, undefined, true);
}

/*
 * y [N, O, OH, OW] = x [N, C, H, W] ⋆ w [O, C, kh, kw] + bias, gY [N, O, OH, OW]:
 *   dX    [N, C, H, W]    = transposed conv of gY with w: one implicit GEMM per stride phase
 *   dW    [O, C, kh, kw]  = gY^T · x gathered under each tap, contracted over (n, oh, ow)
 *   dBias [O]             = gY summed over (n, oh, ow)
 *   dResidual             = gY
 * Each only when `needs` asks (frozen weights: dX alone).
 */
const conv2dBackward: BackwardRule<'conv2d'> = ({ x, w, geo }, [gy], needs) => {
  const g = gy!;
  let dx: Tensor | null = null;
  if (needs[0]) {
    dx = emptyLike(g, [geo.N, geo.C, geo.H, geo.W]);
    const phases = dxPhases(geo);
    const shapes = phases.map((p) => convGemmShape(geo, p));
    // One tile for every phase (the first, largest, decides), and one split count: they share the workspace.
    const tile = convTile('dx', shapes[0]!.M, shapes[0]!.N);
    const splits = Math.max(...shapes.map((s) => splitK(s.M, s.N, s.K, tile).splits));
    const f16 = nativeF16(g.backend);
    runPass(dx, splits, (dst) =>
      phases.forEach((pass, i) => launch(convGemmKernel({ g: geo, pass, dt: dtypes(null, w, g), split: withSplits(shapes[i]!.K, splits), tile, f16 }), [g, w!], [dst])),
    );
  }
  let dw: Tensor | null = null;
  if (needs[1]) {
    dw = emptyLike(g, [geo.O, geo.C, geo.kh, geo.kw]);
    const pass: ConvPass = { kind: 'dw' };
    const { M, N, K } = convGemmShape(geo, pass);
    const split = splitK(M, N, K);
    runPass(dw, split.splits, (dst) => launch(convGemmKernel({ g: geo, pass, dt: dtypes(x, null, g), split, f16: nativeF16(g.backend) }), [g, x!], [dst]));
  }
  let db: Tensor | null = null;
  if (needs[2]) {
    db = emptyLike(g, [geo.O]);
    launch(reduceOn(g.backend, { inShape: [geo.N, geo.O, geo.OH * geo.OW], axes: [0, 2], dtype: g.dtype, scale: 1 }), [g], [db]);
  }
  return [dx, dw, db, needs[3] ? g : null];
};

/** `conv2d` forward on the naive one-thread-per-output kernel (no autograd), for the benchmark's ratio. */
export function conv2dNaive(x: Tensor, w: Tensor, bias?: Tensor, opts: Conv2dOptions = {}): Tensor {
  const g = convGeometry(x.shape, w.shape, opts);
  const y = emptyLike(x, [g.N, g.O, g.OH, g.OW]);
  launch(conv2dNaiveKernel(g, dtypes(x, w, null, bias)), bias ? [x, w, bias] : [x, w], [y]);
  return y;
}

// ---- nearest upsampling ------------------------------------------------------------------------

/** Nearest-neighbour 2x upsampling: x [N, C, H, W] → f32 [N, C, 2H, 2W]. */
export function upsampleNearest2x(x: Tensor): Tensor {
  check(x.rank === 4, () => `upsampleNearest2x: expected [N, C, H, W], got [${x.shape.join(', ')}]`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const y = emptyLike(x, [N, C, 2 * H, 2 * W]);
  launch(upsampleKernel({ planes: N * C, H, W, backward: false, dtype: x.dtype }), [x], [y]);
  record('upsample2x', [x], [y], { shape: x.shape });
  return y;
}

// y [N, C, 2H, 2W], gY likewise:  dX [N, C, H, W] = each 2x2 block of gY summed.
const upsampleBackward: BackwardRule<'upsample2x'> = ({ shape }, [gy]) => {
  const [N, C, H, W] = shape as [number, number, number, number];
  const dx = emptyLike(gy!, shape);
  launch(upsampleKernel({ planes: N * C, H, W, backward: true, dtype: gy!.dtype }), [gy!], [dx]);
  return [dx];
};

export const convRules = { conv2d: conv2dBackward, upsample2x: upsampleBackward };
