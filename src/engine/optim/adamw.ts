// Fused AdamW over a parameter arena, the global gradient norm, and the non-finite guard: no CPU sync anywhere.
import { adamwKernel, normFinishKernel, NORM_PARTIALS, sumSquaresGroups, sumSquaresKernel } from '../kernels/optim.js';
import { launch } from '../ops/util.js';
import { empty, zeros, type Tensor } from '../tensor.js';
import type { ParamArena } from './arena.js';

/**
 * L2 norm of every gradient of the arenas, as a 1-element GPU tensor (nothing is read back; the
 * caller disposes it). One partial-sums dispatch per arena, then one finishing dispatch: A + 1 in all.
 * A NaN or Inf gradient makes the norm non-finite, which `adamwStep` treats as "skip this step".
 */
export function globalGradNorm(arenas: readonly ParamArena[]): Tensor {
  if (arenas.length === 0) throw new Error('globalGradNorm: no arenas');
  const backend = arenas[0]!.backend;
  if (arenas.some((a) => a.backend !== backend)) throw new Error('globalGradNorm: arenas live on different backends');
  const partials = empty(backend, [arenas.length * NORM_PARTIALS]);
  const ranges: [number, number][] = arenas.map((a, i) => {
    const n4 = a.numel / 4;
    const groups = sumSquaresGroups(n4);
    launch(sumSquaresKernel({ n4, groups, slot: i * NORM_PARTIALS }), [a.flatGrads], [partials]);
    return [i * NORM_PARTIALS, groups];
  });
  const norm = empty(backend, [1]);
  launch(normFinishKernel(ranges), [partials], [norm]);
  partials.dispose();
  return norm;
}

/** Hyperparameters of one AdamW step. */
export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay: p -= lr * weightDecay * p. */
  weightDecay: number;
  /** 1-based step count, for bias correction. */
  step: number;
  /** Scale gradients by min(1, maxGradNorm / (norm + 1e-6)); off when absent or <= 0. */
  maxGradNorm?: number;
  /** The global gradient norm (from `globalGradNorm`, possibly over several arenas); computed from this arena when absent. */
  gradNorm?: Tensor;
  /** A 1-element tensor set to 1 when the norm is not finite; never cleared, so zero it when creating it. */
  nanFlag?: Tensor;
}

/**
 * One AdamW step for every parameter of the arena in one dispatch over the flat buffers (plus the
 * norm's two when `gradNorm` is absent): bias-corrected moments, decoupled weight decay, optional
 * global-norm clipping read on the GPU. When the norm is NaN or Inf nothing changes (parameters and
 * moments stay as they were) and the flag is raised. Returns the flag: `nanFlag` when given, else a
 * fresh zero-initialized one the caller disposes. Read it a step later, never inside this one.
 */
export function adamwStep(arena: ParamArena, o: AdamWOptions): Tensor {
  if (!(o.step >= 1 && Number.isInteger(o.step))) throw new Error(`adamwStep: step must be a 1-based integer, got ${o.step}`);
  const b = arena.backend;
  const bc1 = 1 - o.beta1 ** o.step;
  const bc2 = 1 - o.beta2 ** o.step;
  const hp = empty(b, [8]);
  if (b.kind === 'gpu') hp.write([1 - o.lr * o.weightDecay, o.lr / bc1, o.beta1, o.beta2, o.eps, 1 / bc2, o.maxGradNorm ?? 0, 0]);
  const norm = o.gradNorm ?? globalGradNorm([arena]);
  const flag = o.nanFlag ?? zeros(b, [1]);
  launch(adamwKernel(arena.numel / 4), [arena.flatGrads, hp, norm], [arena.flatParams, arena.stateBuffer('adam_m'), arena.stateBuffer('adam_v'), flag]);
  hp.dispose();
  if (!o.gradNorm) norm.dispose();
  return flag;
}
