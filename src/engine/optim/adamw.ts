// Fused AdamW over a parameter arena, with global-norm clipping and the non-finite guard: no CPU sync anywhere.
import { ADAMW_HP, adamwKernel } from '../kernels/optim.js';
import type { Tensor } from '../tensor.js';
import type { ParamArena } from './arena.js';
import { fusedStep, hpWords, perArenaOptimizer, type GuardOptions, type Optimizer } from './optimizer.js';

export { globalGradNorm } from './optimizer.js';

/** AdamW's fixed hyperparameters. */
export interface AdamWHyper {
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay: p -= lr * weightDecay * p. */
  weightDecay: number;
}

/** Hyperparameters of one AdamW step. */
export interface AdamWOptions extends AdamWHyper, GuardOptions {
  lr: number;
  /** 1-based step count, for bias correction. */
  step: number;
}

/**
 * One AdamW step for every parameter of the arena in one dispatch over the flat buffers (plus the
 * norm's two when `gradNorm` is absent): bias-corrected moments, decoupled weight decay, optional
 * global-norm clipping read on the GPU. When the norm is NaN or Inf nothing changes (parameters and
 * moments stay as they were) and the flag is raised. Returns the flag: `nanFlag` when given, else a
 * fresh zero-initialized one the caller disposes. Read it a step later, never inside this one.
 */
export function adamwStep(arena: ParamArena, o: AdamWOptions): Tensor {
  return fusedStep(arena, adamwKernel(arena.numel / 4), adamwHyper(o), ['adam_m', 'adam_v'], o);
}

/** The hyperparameter words of one AdamW step (`ADAMW_HP`): bias corrections from the step, LR, clipping. */
function adamwHyper(o: AdamWHyper & { lr: number; step: number; maxGradNorm?: number }): number[] {
  if (!(o.step >= 1 && Number.isInteger(o.step))) throw new Error(`adamwStep: step must be a 1-based integer, got ${o.step}`);
  const bc1 = 1 - o.beta1 ** o.step;
  const bc2 = 1 - o.beta2 ** o.step;
  return hpWords(ADAMW_HP, { decay: 1 - o.lr * o.weightDecay, stepSize: o.lr / bc1, beta1: o.beta1, beta2: o.beta2, eps: o.eps, invBc2: 1 / bc2, maxNorm: o.maxGradNorm ?? 0 });
}

/** AdamW as an `Optimizer`: one `adamwStep` per arena, sharing the norm and the flag. */
export function adamw(h: AdamWHyper): Optimizer {
  return perArenaOptimizer('adamw', (arena, lr, ctx) => adamwStep(arena, { ...h, ...ctx, lr }), (lr, ctx) => adamwHyper({ ...h, ...ctx, lr }));
}
