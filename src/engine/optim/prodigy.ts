// Prodigy (Mishchenko & Defazio 2023): Adam whose step size d is estimated on the fly, as the
// `prodigyopt` package computes it, over a list of arenas sharing one d kept on the GPU.
import { NORM_PARTIALS, PRODIGY_CTL as C, prodigyFinishKernel, prodigyStatsKernel, prodigyUpdateKernel, sumSquaresGroups } from '../kernels/optim.js';
import { launch } from '../ops/util.js';
import { empty, keep, zeros, type Tensor } from '../tensor.js';
import type { ParamArena } from './arena.js';
import { guardTensors, type ArenaGroup, type Optimizer, type StepContext } from './optimizer.js';

/** Prodigy's hyperparameters; absent ones take prodigyopt's defaults. */
export interface ProdigyHyper {
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Decay of the numerator and of s; default sqrt(beta2). */
  beta3?: number;
  /** Added to sqrt(v) after scaling by d; default 1e-8. */
  eps?: number;
  /** Decoupled weight decay: p -= weightDecay * d * lr * p. Default 0. */
  weightDecay?: number;
  /** Initial estimate of d; default 1e-6. */
  d0?: number;
  /** Multiplier of the estimate of d, the preferred knob; default 1. */
  dCoef?: number;
  /** Bound on d's growth per step (factor); default Infinity. */
  growthRate?: number;
  /** Adam's bias correction in the step size; default off. */
  biasCorrection?: boolean;
  /** Leave the LR out of s, against a too-small d during warmup; default off. */
  safeguardWarmup?: boolean;
}

/** The scalars Prodigy keeps on the GPU, read back for display and tests. */
export interface ProdigyScalars {
  d: number;
  dMax: number;
  /** The moving sum in d's numerator. */
  numerator: number;
  /** Updates taken (steps that were not skipped). */
  k: number;
}

const STATE = { p0: 'prodigy_p0', m: 'prodigy_m', v: 'prodigy_v', s: 'prodigy_s' } as const;

/**
 * Prodigy over several arenas with one shared d, as prodigyopt's parameter groups share it. Each
 * update is 2A + 1 dispatches and no readback: per arena one pass updating the moments and s and
 * writing partial sums of the numerator <g, p0 - p> and of |s|_1; one workgroup turning them into
 * the new d in the control buffer; per arena one pass moving the parameters. p0 is the parameters
 * at the first update. Gradients are clipped by the global norm like the other optimizers, and a
 * non-finite norm leaves everything (d included) as it was and raises the flag.
 *
 * Per-arena LRs: prodigyopt accepts only groups whose LR is the largest one or 0; there this is
 * the same computation. Arenas at different nonzero LRs each use their own LR in dlr = d·lr
 * (their step, their share of the numerator and of s), where prodigyopt refuses to run.
 */
export class Prodigy implements Optimizer {
  readonly name = 'prodigy';
  readonly hyper: Required<ProdigyHyper>;
  private ctl: Tensor | null = null;
  private arenas: readonly ParamArena[] = [];

  constructor(h: ProdigyHyper = {}) {
    const beta2 = h.beta2 ?? 0.999;
    this.hyper = {
      beta1: h.beta1 ?? 0.9,
      beta2,
      beta3: h.beta3 ?? Math.sqrt(beta2),
      eps: h.eps ?? 1e-8,
      weightDecay: h.weightDecay ?? 0,
      d0: h.d0 ?? 1e-6,
      dCoef: h.dCoef ?? 1,
      growthRate: h.growthRate ?? Infinity,
      biasCorrection: h.biasCorrection ?? false,
      safeguardWarmup: h.safeguardWarmup ?? false,
    };
    const p = this.hyper;
    for (const k of ['beta1', 'beta2', 'beta3'] as const) if (!(p[k] >= 0 && p[k] < 1)) throw new Error(`prodigy: ${k} must be in [0, 1), got ${p[k]}`);
    if (!(p.d0 > 0)) throw new Error(`prodigy: d0 must be above 0, got ${p.d0}`);
    if (!(p.eps > 0)) throw new Error(`prodigy: eps must be above 0, got ${p.eps}`);
    if (!(p.growthRate >= 1)) throw new Error(`prodigy: growthRate must be at least 1, got ${p.growthRate}`);
  }

  /** The control words `update` uploads (its hyperparameters, then each group's LR): one upload for all groups. */
  hyperparameters(groups: readonly ArenaGroup[], ctx: StepContext): Float32Array[] {
    const h = this.hyper;
    const hp = [h.beta1, h.beta2, h.beta3, h.eps, h.weightDecay, h.d0, h.dCoef, Number.isFinite(h.growthRate) ? h.growthRate : 0, ctx.maxGradNorm ?? 0, h.biasCorrection ? 1 : 0, h.safeguardWarmup ? 1 : 0];
    const words = new Float32Array(C.lr - C.beta1 + groups.length);
    words.set(hp);
    words.set(groups.map((g) => g.lr), C.lr - C.beta1);
    return [words];
  }

  update(groups: readonly ArenaGroup[], ctx: StepContext): Tensor {
    const arenas = groups.map((g) => g.arena);
    const lrs = groups.map((g) => g.lr);
    if (lrs.some((lr) => !(lr >= 0))) throw new Error(`prodigy: learning rates must be 0 or more, got ${lrs.join(', ')}`);
    const ctl = this.control(arenas);
    const b = ctl.backend;
    if (b.kind === 'gpu') b.write(ctl.storage, ctl.offset + 4 * C.beta1, this.hyperparameters(groups, ctx)[0]!);
    const { norm, flag, release } = guardTensors(arenas, ctx);
    b.copy(norm.storage, norm.offset, ctl.storage, ctl.offset + 4 * C.norm, 4);

    const denomBase = arenas.length * NORM_PARTIALS;
    const partials = empty(b, [2 * denomBase]);
    const state = arenas.map((a) => ({ p0: a.stateBuffer(STATE.p0), m: a.stateBuffer(STATE.m), v: a.stateBuffer(STATE.v), s: a.stateBuffer(STATE.s) }));
    const ranges: [number, number][] = arenas.map((a, i) => {
      const n4 = a.numel / 4;
      const groups = sumSquaresGroups(n4);
      const st = state[i]!;
      launch(prodigyStatsKernel({ n4, groups, arena: i, slot: i * NORM_PARTIALS, denomBase }), [a.flatGrads, ctl, a.flatParams, st.p0], [st.m, st.v, st.s, partials]);
      return [i * NORM_PARTIALS, groups];
    });
    launch(prodigyFinishKernel({ ranges, denomBase }), [partials], [ctl, flag]);
    arenas.forEach((a, i) => launch(prodigyUpdateKernel({ n4: a.numel / 4, arena: i }), [ctl, state[i]!.m, state[i]!.v], [a.flatParams]));
    partials.dispose();
    release();
    return flag;
  }

  /** d, its running max, the numerator and the update count, read back (resolves once the GPU gets there). */
  async scalars(): Promise<ProdigyScalars> {
    if (!this.ctl) return { d: this.hyper.d0, dMax: this.hyper.d0, numerator: 0, k: 0 };
    const w = await this.ctl.read();
    return { d: w[C.d]!, dMax: w[C.dMax]!, numerator: w[C.numerator]!, k: w[C.k]! };
  }

  /** The whole control buffer (d, its max, the numerator, k, the last step's words), read back; null before the first update. */
  async controlWords(): Promise<Float32Array | null> {
    return this.ctl ? this.ctl.read() : null;
  }

  /**
   * Continue from saved state: the control buffer `controlWords` gave, for these arenas (whose
   * p0, m, v and s state buffers the caller restores), as if the earlier updates had run here.
   */
  restoreControl(arenas: readonly ParamArena[], words: Float32Array): void {
    if (this.ctl) throw new Error('prodigy: restoreControl before the first update only');
    if (arenas.length === 0) throw new Error('prodigy: no arenas to restore');
    if (words.length !== C.lr + arenas.length) throw new Error(`prodigy: a control buffer of ${words.length} words for ${arenas.length} arenas (expected ${C.lr + arenas.length})`);
    const ctl = keep(zeros(arenas[0]!.backend, [words.length]));
    if (ctl.backend.kind === 'gpu') ctl.write(words);
    this.ctl = ctl;
    this.arenas = [...arenas];
  }

  dispose(): void {
    this.ctl?.dispose();
    this.ctl = null;
  }

  /** The control buffer; on the first update, also p0 := the arenas' parameters and d := d0. */
  private control(arenas: readonly ParamArena[]): Tensor {
    if (arenas.length === 0) throw new Error('prodigy: no arenas to update');
    if (this.ctl) {
      if (arenas.length !== this.arenas.length || arenas.some((a, i) => a !== this.arenas[i])) throw new Error('prodigy: every update must step the same arenas, in the same order');
      return this.ctl;
    }
    const b = arenas[0]!.backend;
    if (arenas.some((a) => a.backend !== b)) throw new Error('prodigy: arenas live on different backends');
    const ctl = keep(zeros(b, [C.lr + arenas.length]));
    if (b.kind === 'gpu') b.write(ctl.storage, ctl.offset, Float32Array.from([this.hyper.d0, this.hyper.d0]));
    for (const a of arenas) b.copy(a.flatParams.storage, a.flatParams.offset, a.stateBuffer(STATE.p0).storage, 0, a.numel * 4);
    this.ctl = ctl;
    this.arenas = [...arenas];
    return ctl;
  }
}

/** Prodigy as an `Optimizer` (its state starts at the first update). */
export function prodigy(h: ProdigyHyper = {}): Optimizer {
  return new Prodigy(h);
}
