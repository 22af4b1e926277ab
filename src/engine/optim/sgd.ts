// Fused SGD with momentum over a parameter arena, with torch.optim.SGD's semantics (dampening 0).
import { SGD_HP, sgdKernel } from '../kernels/optim.js';
import type { Tensor } from '../tensor.js';
import type { ParamArena } from './arena.js';
import { fusedStep, hpWords, perArenaOptimizer, type GuardOptions, type Optimizer } from './optimizer.js';

/** SGD's fixed hyperparameters. */
export interface SgdHyper {
  /** Momentum factor mu, 0 (plain SGD) to below 1. */
  momentum: number;
  /** L2 penalty added to the gradient (coupled, as torch.optim.SGD): d = g + weightDecay * p. */
  weightDecay: number;
  /** Nesterov momentum: step along d + mu * buf instead of buf; needs momentum > 0. */
  nesterov?: boolean;
}

/** Hyperparameters of one SGD step. */
export interface SgdOptions extends SgdHyper, GuardOptions {
  lr: number;
}

function checkHyper(h: SgdHyper): void {
  if (!(h.momentum >= 0 && h.momentum < 1)) throw new Error(`sgd: momentum must be in [0, 1), got ${h.momentum}`);
  if (h.nesterov && h.momentum <= 0) throw new Error('sgd: Nesterov momentum needs a momentum above 0');
}

/**
 * One SGD step for every parameter of the arena in one dispatch (plus the norm's two when
 * `gradNorm` is absent), as torch.optim.SGD with dampening 0 on the clipped gradient g:
 * d = g + wd·p; buf = mu·buf + d (buf = d on the first step); p -= lr·buf (Nesterov: lr·(d + mu·buf)).
 * One state buffer (`sgd_buf`). A non-finite norm changes nothing and raises the flag; returns the
 * flag as `adamwStep` does.
 */
export function sgdStep(arena: ParamArena, o: SgdOptions): Tensor {
  checkHyper(o);
  return fusedStep(arena, sgdKernel(arena.numel / 4), sgdHyper(o), ['sgd_buf'], o);
}

/** The hyperparameter words of one SGD step (`SGD_HP`). */
function sgdHyper(o: SgdHyper & { lr: number; maxGradNorm?: number }): number[] {
  return hpWords(SGD_HP, { lr: o.lr, weightDecay: o.weightDecay, momentum: o.momentum, nesterov: o.nesterov ? 1 : 0, maxNorm: o.maxGradNorm ?? 0 });
}

/** SGD as an `Optimizer`: one `sgdStep` per arena, sharing the norm and the flag. */
export function sgd(h: SgdHyper): Optimizer {
  checkHyper(h);
  return perArenaOptimizer('sgd', (arena, lr, ctx) => sgdStep(arena, { ...h, ...ctx, lr }), (lr, ctx) => sgdHyper({ ...h, ...ctx, lr }));
}
