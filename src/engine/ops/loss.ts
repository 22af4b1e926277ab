// Training losses built from differentiable ops: (weighted) mean squared error and pseudo-Huber.
import { record, type BackwardRule } from '../autograd.js';
import { f } from '../kernels/wgsl.js';
import type { Tensor } from '../tensor.js';
import { map, mean, mul, sub } from './elementwise.js';
import { reshape } from './view.js';
import { check } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    pseudoHuber: { r: Tensor; delta: number };
  }
}

/** Per batch item mean of `perElement` [B, ...], weighted by `weights` [B] when given, then averaged: a scalar. */
function reduceLoss(perElement: Tensor, weights?: Tensor): Tensor {
  const B = perElement.shape[0]!;
  const perItem = mean(reshape(perElement, [B, perElement.size / B]), [1]);
  if (weights) check(weights.size === B, () => `loss weights have ${weights.size} entries for a batch of ${B}`);
  return reshape(mean(weights ? mul(perItem, weights) : perItem), []);
}

/** mean over the batch of w_b · mean((pred − target)²) for item b. */
export function mseLoss(pred: Tensor, target: Tensor, weights?: Tensor): Tensor {
  const d = sub(pred, target);
  return reduceLoss(mul(d, d), weights);
}

/** Pseudo-Huber loss 2δ²(√(1 + (r/δ)²) − 1) per element, reduced like `mseLoss` (quadratic near 0, linear far out). */
export function huberLoss(pred: Tensor, target: Tensor, delta: number, weights?: Tensor): Tensor {
  check(delta > 0, () => `huber delta must be positive, got ${delta}`);
  const r = sub(pred, target);
  const out = map('pseudo_huber', [r], `${f(2 * delta * delta)} * (sqrt(1.0 + a * a * ${f(1 / (delta * delta))}) - 1.0)`, 6);
  record('pseudoHuber', [r], [out], { r, delta }, [r]);
  return reduceLoss(out, weights);
}

// d/dr 2δ²(√(1+(r/δ)²) − 1) = 2r / √(1+(r/δ)²)
const pseudoHuberBackward: BackwardRule<'pseudoHuber'> = ({ r, delta }, [g]) => [map('pseudo_huber_grad', [g!, r], `a * 2.0 * b / sqrt(1.0 + b * b * ${f(1 / (delta * delta))})`, 6)];

export const lossRules = { pseudoHuber: pseudoHuberBackward };
