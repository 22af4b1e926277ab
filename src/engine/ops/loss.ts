// Training losses built from differentiable ops: (weighted) mean squared error and pseudo-Huber.
import { record, type BackwardRule } from '../autograd.js';
import type { Tensor } from '../tensor.js';
import { map, mean, mul, sub } from './elementwise.js';
import { reshape } from './view.js';
import { check, sameShape } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    pseudoHuber: { r: Tensor; delta: number };
  }
}

/** pred − target, after checking the two agree and pred has a batch dimension. */
function residual(pred: Tensor, target: Tensor): Tensor {
  check(pred.rank >= 1 && pred.size > 0 && sameShape(pred.shape, target.shape), () => `loss: pred [${pred.shape}] and target [${target.shape}] must be the same non-empty shape [B, ...]`);
  return sub(pred, target);
}

/** Per batch item mean of `perElement` [B, ...], weighted by `weights` [B] when given, then averaged: a scalar []. */
function reduceLoss(perElement: Tensor, weights?: Tensor): Tensor {
  const B = perElement.shape[0]!;
  const perItem = mean(reshape(perElement, [B, perElement.size / B]), [1]);
  if (weights) check(weights.size === B, () => `loss weights have ${weights.size} entries for a batch of ${B}`);
  return reshape(mean(weights ? mul(perItem, weights.rank === 1 ? weights : reshape(weights, [B])) : perItem), []);
}

/**
 * Mean squared error → scalar []: mean over the batch of w_b · mean((pred − target)²) over item b's
 * elements; without weights, the plain mean over all elements. pred, target [B, ...]; weights [B].
 */
export function mseLoss(pred: Tensor, target: Tensor, weights?: Tensor): Tensor {
  const d = residual(pred, target);
  return reduceLoss(mul(d, d), weights);
}

/**
 * Pseudo-Huber loss → scalar []: 2δ²(√(1 + (r/δ)²) − 1) per element with r = pred − target, reduced
 * like `mseLoss`. This is kohya sd-scripts' "huber" loss, 2δ(√(r² + δ²) − δ): ≈ r² for |r| ≪ δ (the
 * same as MSE there) and ≈ 2δ|r| for |r| ≫ δ, smooth everywhere.
 */
export function huberLoss(pred: Tensor, target: Tensor, delta: number, weights?: Tensor): Tensor {
  check(delta > 0 && Number.isFinite(delta), () => `huber delta must be positive, got ${delta}`);
  const r = residual(pred, target);
  const out = map('pseudo_huber', [r], 'k0 * (sqrt(1.0 + a * a * k1) - 1.0)', 6, undefined, [2 * delta * delta, 1 / (delta * delta)]);
  record('pseudoHuber', [r], [out], { r, delta }, [r]);
  return reduceLoss(out, weights);
}

// d/dr 2δ²(√(1+(r/δ)²) − 1) = 2r / √(1+(r/δ)²)
const pseudoHuberBackward: BackwardRule<'pseudoHuber'> = ({ r, delta }, [g]) => [map('pseudo_huber_grad', [g!, r], 'a * 2.0 * b / sqrt(1.0 + b * b * k0)', 6, undefined, [1 / (delta * delta)])];

export const lossRules = { pseudoHuber: pseudoHuberBackward };
