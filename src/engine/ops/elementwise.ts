// Broadcasting arithmetic, activations and sum/mean reductions, each with its backward beside it.
import { noGrad, record, type BackwardRule } from '../autograd.js';
import { ACTIVATIONS, mapKernel } from '../kernels/elementwise.js';
import { reduceOn } from './reduce.js';
import type { Tensor } from '../tensor.js';
import { broadcastShapes, broadcastStrides, emptyLike, launch, sameShape } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    add: { a: readonly number[]; b: readonly number[]; alpha: number };
    mul: { a: Tensor; b: Tensor };
    scale: { s: number };
    act: { x: Tensor; fn: Activation };
    sum: { inShape: readonly number[]; axes: number[]; scale: number };
  }
}

/** Elementwise activations with closed-form derivatives in kernels/elementwise.ts. */
export type Activation = 'silu' | 'gelu' | 'gelu_tanh' | 'quick_gelu';

const ACT_FLOPS: Record<Activation, number> = { silu: 4, gelu: 20, gelu_tanh: 12, quick_gelu: 5 };

/**
 * Elementwise map over broadcast inputs with a WGSL expression in `a`, `b`, ... and the run-time
 * constants `k0`, `k1`, ... given in `scalars` (no autograd).
 */
export function map(name: string, inputs: readonly Tensor[], expr: string, flops = 1, outShape?: readonly number[], scalars?: number[]): Tensor {
  const shape = outShape ?? inputs.map((t) => t.shape).reduce((x, y) => broadcastShapes(x, y));
  const out = emptyLike(inputs[0]!, shape);
  const k = mapKernel(name, { outShape: [...shape], inputs: inputs.map((t) => ({ dtype: t.dtype, strides: broadcastStrides(t.shape, shape) })), expr, scalars, prelude: ACTIVATIONS }, flops);
  launch(k, inputs, [out]);
  return out;
}

/** `dst += src` in place (gradient accumulation); `src` may broadcast into `dst`. */
export function addInto(dst: Tensor, src: Tensor, alpha = 1): void {
  const k = mapKernel('add_into', { outShape: [...dst.shape], inputs: [{ dtype: src.dtype, strides: broadcastStrides(src.shape, dst.shape) }], expr: alpha === 1 ? 'a' : 'a * k0', scalars: alpha === 1 ? [] : [alpha], accumulate: true });
  launch(k, [src], [dst]);
}

/** a + alpha * b, broadcasting. */
export function add(a: Tensor, b: Tensor, alpha = 1): Tensor {
  const out = alpha === 1 ? map('add', [a, b], 'a + b') : map('add', [a, b], 'a + k0 * b', 1, undefined, [alpha]);
  record('add', [a, b], [out], { a: a.shape, b: b.shape, alpha });
  return out;
}

const addBackward: BackwardRule<'add'> = ({ a, b, alpha }, [g], needs) => [
  needs[0] ? sumTo(g!, a) : null,
  needs[1] ? sumTo(g!, b, alpha) : null,
];

/** a - b, broadcasting. */
export function sub(a: Tensor, b: Tensor): Tensor {
  return add(a, b, -1);
}

/** a * b, broadcasting. */
export function mul(a: Tensor, b: Tensor): Tensor {
  const out = map('mul', [a, b], 'a * b');
  record('mul', [a, b], [out], { a, b }, [a, b]);
  return out;
}

const mulBackward: BackwardRule<'mul'> = ({ a, b }, [g], needs) => [
  needs[0] ? reduceTo(map('mul', [g!, b], 'a * b'), a.shape) : null,
  needs[1] ? reduceTo(map('mul', [g!, a], 'a * b'), b.shape) : null,
];

/** x * s for a constant s. */
export function scale(x: Tensor, s: number): Tensor {
  const out = map('scale', [x], 'a * k0', 1, undefined, [s]);
  record('scale', [x], [out], { s });
  return out;
}

const scaleBackward: BackwardRule<'scale'> = ({ s }, [g]) => [map('scale', [g!], 'a * k0', 1, undefined, [s])];

/** An elementwise activation. */
export function activation(x: Tensor, fn: Activation): Tensor {
  const out = map(fn, [x], `${fn}(a)`, ACT_FLOPS[fn]);
  record('act', [x], [out], { x, fn }, [x]);
  return out;
}

export const silu = (x: Tensor): Tensor => activation(x, 'silu');
/** GELU with the exact erf form (PyTorch's default). */
export const gelu = (x: Tensor): Tensor => activation(x, 'gelu');
/** GELU with the tanh approximation. */
export const geluTanh = (x: Tensor): Tensor => activation(x, 'gelu_tanh');
/** CLIP's x * sigmoid(1.702 x). */
export const quickGelu = (x: Tensor): Tensor => activation(x, 'quick_gelu');

const actBackward: BackwardRule<'act'> = ({ x, fn }, [g]) => [map(`${fn}_grad`, [g!, x], `a * ${fn}_grad(b)`, ACT_FLOPS[fn] + 2)];

/** Sum over `axes` (all when omitted), times `scale`; `keepDims` keeps them as size 1. */
export function sum(x: Tensor, axes?: readonly number[], keepDims = false, scale_ = 1): Tensor {
  const ax = (axes ?? x.shape.map((_, i) => i)).map((a) => (a < 0 ? a + x.rank : a));
  const kept = x.shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const out = emptyLike(x, keepDims ? kept : x.shape.filter((_, i) => !ax.includes(i)));
  launch(reduceOn(x.backend, { inShape: [...x.shape], axes: ax, dtype: x.dtype, scale: scale_ }), [x], [out]);
  record('sum', [x], [out], { inShape: x.shape, axes: ax, scale: scale_ });
  return out;
}

/** Mean over `axes` (all when omitted). */
export function mean(x: Tensor, axes?: readonly number[], keepDims = false): Tensor {
  const ax = (axes ?? x.shape.map((_, i) => i)).map((a) => (a < 0 ? a + x.rank : a));
  const n = ax.reduce((p, a) => p * x.shape[a]!, 1);
  return sum(x, ax, keepDims, 1 / n);
}

const sumBackward: BackwardRule<'sum'> = ({ inShape, axes, scale: s }, [g]) => {
  const kept = inShape.map((d, i) => (axes.includes(i) ? 1 : d));
  const gk = g!.reshape(kept);
  const out = s === 1 ? map('sum_grad', [gk], 'a', 1, inShape) : map('sum_grad', [gk], 'a * k0', 1, inShape, [s]);
  gk.dispose();
  return [out];
};

/** Sum a broadcast result back down to `shape` (no autograd; used by backward rules). */
export function reduceTo(g: Tensor, shape: readonly number[], s = 1): Tensor {
  if (sameShape(g.shape, shape) && s === 1) return g;
  if (sameShape(g.shape, shape)) return map('scale', [g], 'a * k0', 1, undefined, [s]);
  const lead = g.rank - shape.length;
  const axes = g.shape.map((_, i) => i).filter((i) => i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1));
  const out = emptyLike(g, shape);
  launch(reduceOn(g.backend, { inShape: [...g.shape], axes, dtype: g.dtype, scale: s }), [g], [out]);
  return out;
}

/** Gradient of a broadcast input: `g` itself when nothing changes (backward accumulates out of place), else a reduction or scaled copy. */
function sumTo(g: Tensor, shape: readonly number[], s = 1): Tensor {
  return noGrad(() => reduceTo(g, shape, s));
}

export const elementwiseRules = { add: addBackward, mul: mulBackward, scale: scaleBackward, act: actBackward, sum: sumBackward };
