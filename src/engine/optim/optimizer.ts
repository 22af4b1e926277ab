// What every optimizer over parameter arenas shares: the interface the trainer steps, the global
// gradient norm, and the clipping/non-finite guard tensors every fused update reads on the GPU.
import { normFinishKernel, NORM_PARTIALS, sumSquaresGroups, sumSquaresKernel } from '../kernels/optim.js';
import type { Kernel } from '../kernel.js';
import { launch } from '../ops/util.js';
import { empty, zeros, type Tensor } from '../tensor.js';
import type { ParamArena } from './arena.js';

/**
 * L2 norm of every gradient of the arenas, as a 1-element GPU tensor (nothing is read back; the
 * caller disposes it). One partial-sums dispatch per arena, then one finishing dispatch: A + 1 in all.
 * A NaN or Inf gradient makes the norm non-finite, which every optimizer step treats as "skip this step".
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

/** Clipping and the non-finite guard, as every optimizer step takes them. */
export interface GuardOptions {
  /** Scale gradients by min(1, maxGradNorm / (norm + 1e-6)); off when absent or <= 0. */
  maxGradNorm?: number;
  /** The global gradient norm (from `globalGradNorm`, possibly over several arenas); computed from the arenas stepped when absent. */
  gradNorm?: Tensor;
  /** A 1-element tensor set to 1 when the norm is not finite; never cleared, so zero it when creating it. */
  nanFlag?: Tensor;
}

/** The norm and flag a step reads and raises: the caller's, or fresh ones (`release` disposes a fresh norm; a fresh flag is returned). */
export function guardTensors(arenas: readonly ParamArena[], o: GuardOptions): { norm: Tensor; flag: Tensor; release(): void } {
  const norm = o.gradNorm ?? globalGradNorm(arenas);
  const flag = o.nanFlag ?? zeros(arenas[0]!.backend, [1]);
  return {
    norm,
    flag,
    release: () => {
      if (!o.gradNorm) norm.dispose();
    },
  };
}

/**
 * A fused kernel's hyperparameter words, placed by name from its layout table (`ADAMW_HP`, `LION_HP`,
 * `SGD_HP` in kernels/optim.ts), so the values and the kernel's reads come from one list; 'unused' words are 0.
 */
export function hpWords<const L extends readonly string[]>(layout: L, values: { readonly [K in Exclude<L[number], 'unused'>]: number }): number[] {
  const v = values as Readonly<Record<string, number>>;
  return layout.map((name) => (name === 'unused' ? 0 : v[name]!));
}

/**
 * One fused elementwise update of the arena (kernels/optim.ts `fusedKernel` frame): binds grad,
 * an 8-word hyperparameter buffer holding `hp`, the norm, then params and the named state buffers,
 * then the flag. Returns the flag.
 */
export function fusedStep(arena: ParamArena, kernel: Kernel, hp: readonly number[], state: readonly string[], o: GuardOptions): Tensor {
  if (hp.length !== 8) throw new Error(`fusedStep: ${hp.length} hyperparameters, expected 8`);
  const b = arena.backend;
  const hpT = empty(b, [8]);
  if (b.kind === 'gpu') hpT.write(hp);
  const { norm, flag, release } = guardTensors([arena], o);
  launch(kernel, [arena.flatGrads, hpT, norm], [arena.flatParams, ...state.map((s) => arena.stateBuffer(s)), flag]);
  hpT.dispose();
  release();
  return flag;
}

/** An arena and the learning rate it is stepped with. */
export interface ArenaGroup {
  arena: ParamArena;
  lr: number;
}

/** One step's context: its 1-based number, clipping and the guard (shared by every group). */
export interface StepContext extends GuardOptions {
  step: number;
}

/**
 * An optimizer over arenas: its state lives in the arenas' state buffers (and, for Prodigy, in a
 * GPU control buffer of its own), so an update encodes dispatches and reads nothing back.
 */
export interface Optimizer {
  readonly name: string;
  /**
   * One update of every group, each at its own LR. A non-finite global norm leaves every
   * parameter and state as it was and raises the flag. Returns the flag: `ctx.nanFlag` when given,
   * else a fresh zero-initialized one the caller disposes. Read it a step later, never inside this one.
   */
  update(groups: readonly ArenaGroup[], ctx: StepContext): Tensor;
  /**
   * The hyperparameter words `update` uploads for each group, in order (f32, as uploaded), when
   * they are a function of the groups' LRs and the step alone: a recorded step plan replays the
   * update with them (engine/replay.ts). Absent: the update cannot be replayed.
   */
  hyperparameters?(groups: readonly ArenaGroup[], ctx: StepContext): Float32Array[];
  /** Release what the optimizer holds outside the arenas. */
  dispose(): void;
}

/** An optimizer whose update is independent per arena, given a shared norm and flag. */
export function perArenaOptimizer(name: string, step: (arena: ParamArena, lr: number, ctx: Required<Omit<StepContext, 'maxGradNorm'>> & GuardOptions) => void, hyper?: (lr: number, ctx: StepContext) => number[]): Optimizer {
  return {
    name,
    ...(hyper ? { hyperparameters: (groups, ctx) => groups.map((g) => Float32Array.from(hyper(g.lr, ctx))) } : {}),
    update(groups, ctx) {
      if (groups.length === 0) throw new Error(`${name}: no arenas to update`);
      const { norm, flag, release } = guardTensors(
        groups.map((g) => g.arena),
        ctx,
      );
      for (const g of groups) step(g.arena, g.lr, { ...ctx, gradNorm: norm, nanFlag: flag });
      release();
      return flag;
    },
    dispose() {},
  };
}
