// A linear layer with a low-rank adapter as one op: base GEMM, down and up projections, no separate adds.
import { needsGrad, noGrad, record, type BackwardRule } from '../autograd.js';
import { reduceKernel } from '../kernels/reduce.js';
import { numel, zeros, type Tensor } from '../tensor.js';
import { dropout } from './dropout.js';
import { linear, linearInto, matmul, matmulInto } from './matmul.js';
import { check, emptyLike, launch, sameShape } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    lowrank: {
      /** x when down or w needs a gradient (their gradients read it); w when x does (dX reads it). */
      x: Tensor | null;
      w: Tensor | null;
      down: Tensor;
      up: Tensor;
      /** The dropped-out down projection, when up needs a gradient. */
      h: Tensor | null;
      xShape: readonly number[];
      scale: number;
      p: number;
      seed: number;
    };
  }
}

/** The adapter of one layer: y gains scale * drop(x down^T) up^T. */
export interface LowRank {
  /** [rank, in] */
  down: Tensor;
  /** [out, rank] */
  up: Tensor;
  scale: number;
  /** Dropout on the down projection's output (training only), with the seed of its mask. */
  dropout?: { p: number; seed: number };
}

/**
 * y = x w^T + bias + residual + scale * drop(x down^T) up^T, with x [..., in], w [out, in] (often
 * frozen f16), bias [out], residual [..., out]. Three GEMMs: the down projection; the base, whose
 * epilogue adds the bias and the residual; the up projection, added into the base's output by its
 * epilogue. Without an adapter this is `linear`.
 */
export function lowRankLinear(x: Tensor, w: Tensor, bias: Tensor | undefined, a: LowRank | null, residual?: Tensor): Tensor {
  if (!a) return linear(x, w, bias, 1, residual);
  const [outF, inF] = w.shape as [number, number];
  const rank = a.down.shape[0]!;
  check(sameShape(a.down.shape, [rank, inF]) && sameShape(a.up.shape, [outF, rank]), () => `lowRankLinear: factors [${a.down.shape.join(', ')}] and [${a.up.shape.join(', ')}] do not adapt [${outF}, ${inF}]`);
  const p = a.dropout?.p ?? 0;
  const seed = (a.dropout?.seed ?? 0) >>> 0;
  const { y, h } = noGrad(() => {
    const h0 = linear(x, a.down);
    const hd = p > 0 ? dropout(h0, p, seed) : h0;
    if (hd !== h0) h0.dispose();
    const y0 = linear(x, w, bias, 1, residual);
    linearInto(y0, hd, a.up, a.scale);
    return { y: y0, h: hd };
  });
  const keepX = needsGrad(a.down) || needsGrad(w) ? x : null;
  const keepW = needsGrad(x) ? w : null;
  const keepH = needsGrad(a.up) ? h : null;
  const held = [keepX, keepW, keepH, a.down, a.up].filter((t): t is Tensor => t !== null);
  record('lowrank', [x, w, bias ?? null, a.down, a.up, residual ?? null], [y], { x: keepX, w: keepW, down: a.down, up: a.up, h: keepH, xShape: x.shape, scale: a.scale, p, seed }, held);
  h.dispose();
  return y;
}

/**
 * The gradient buffer a rule may add into directly: a leaf's existing f32 gradient (an arena's
 * slot), so the GEMM that computes the contribution also accumulates it. Null: return a fresh one.
 */
function leafGradient(t: Tensor): Tensor | null {
  const g = t.grad;
  return t.requiresGrad && t.node === null && g && g.dtype === 'f32' && sameShape(g.shape, t.shape) ? g : null;
}

/*
 * y [R, out] = x w^T + b + r + s·hd up^T,  hd = drop(x down^T) [R, rank],  gY [R, out]:
 *   gH    [R, rank]  = drop(gY up)                  (one GEMM, the mask replayed from the seed)
 *   dX    [R, in]    = gY w + s·gH down             (two GEMMs into one buffer)
 *   dDown [rank, in] += s·gH^T x                    (into the leaf's gradient where it has one)
 *   dUp   [out, rank] += s·gY^T hd
 *   dW = gY^T x, dBias = sum_R gY, dResidual = gY
 */
const lowRankBackward: BackwardRule<'lowrank'> = (s, [gy], needs) => {
  const [outF, rank] = s.up.shape as [number, number];
  const inF = s.down.shape[1]!;
  const R = numel(s.xShape) / inF;
  const g = gy!.reshape([R, outF]);
  const x2 = s.x?.reshape([R, inF]);
  let gh: Tensor | null = null;
  if (needs[0] || needs[3]) {
    const gh0 = matmul(g, s.up);
    gh = s.p > 0 ? dropout(gh0, s.p, s.seed) : gh0;
  }
  let dx: Tensor | null = null;
  if (needs[0]) {
    dx = matmul(g, s.w!);
    matmulInto(dx, gh!, s.down, { alpha: s.scale });
  }
  const dW = needs[1] ? matmul(g, x2!, { transA: true }) : null;
  let dBias: Tensor | null = null;
  if (needs[2]) {
    dBias = emptyLike(g, [outF]);
    launch(reduceKernel({ inShape: [R, outF], axes: [0], dtype: g.dtype, scale: 1 }), [g], [dBias]);
  }
  const into = (leaf: Tensor, fill: (t: Tensor) => void): Tensor | null => {
    const acc = leafGradient(leaf);
    const t = acc ?? zeros(g.backend, leaf.shape);
    fill(t);
    return acc ? null : t;
  };
  const dDown = needs[3] ? into(s.down, (t) => matmulInto(t, gh!, x2!, { transA: true, alpha: s.scale })) : null;
  const dUp = needs[4] ? into(s.up, (t) => matmulInto(t, g, s.h!.reshape([R, rank]), { transA: true, alpha: s.scale })) : null;
  return [dx?.reshape(s.xShape) ?? null, dW, dBias, dDown, dUp, needs[5] ? gy! : null];
};

export const lowRankRules = { lowrank: lowRankBackward };
