// Fused Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms") over a parameter arena.
import { LION_HP, lionKernel } from '../kernels/optim.js';
import type { Tensor } from '../tensor.js';
import type { ParamArena } from './arena.js';
import { fusedStep, hpWords, perArenaOptimizer, type GuardOptions, type Optimizer } from './optimizer.js';

/** Lion's fixed hyperparameters; the paper's defaults are betas (0.9, 0.99). */
export interface LionHyper {
  beta1: number;
  beta2: number;
  /** Decoupled weight decay: p -= lr * weightDecay * p. */
  weightDecay: number;
}

/** Hyperparameters of one Lion step. */
export interface LionOptions extends LionHyper, GuardOptions {
  lr: number;
}

/**
 * One Lion step for every parameter of the arena in one dispatch (plus the norm's two when
 * `gradNorm` is absent): c = b1·m + (1-b1)·g, p = p·(1 - lr·wd) - lr·sign(c), m = b2·m + (1-b2)·g,
 * with g clipped by the global norm. One state buffer (`lion_m`). A non-finite norm changes nothing
 * and raises the flag; returns the flag as `adamwStep` does.
 */
export function lionStep(arena: ParamArena, o: LionOptions): Tensor {
  return fusedStep(arena, lionKernel(arena.numel / 4), lionHyper(o), ['lion_m'], o);
}

/** The hyperparameter words of one Lion step (`LION_HP`). */
function lionHyper(o: LionHyper & { lr: number; maxGradNorm?: number }): number[] {
  return hpWords(LION_HP, { decay: 1 - o.lr * o.weightDecay, lr: o.lr, beta1: o.beta1, beta2: o.beta2, maxNorm: o.maxGradNorm ?? 0 });
}

/** Lion as an `Optimizer`: one `lionStep` per arena, sharing the norm and the flag. */
export function lion(h: LionHyper): Optimizer {
  return perArenaOptimizer('lion', (arena, lr, ctx) => lionStep(arena, { ...h, ...ctx, lr }), (lr, ctx) => lionHyper({ ...h, ...ctx, lr }));
}
