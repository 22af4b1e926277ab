// Learning-rate schedules as plain (step) => lr functions, defined as diffusers' get_scheduler defines them.
//
// `step` counts optimizer updates already taken (0 for the first update), so with warmup the first
// update runs at LR 0, as in diffusers and kohya, where the scheduler steps after the optimizer.

export const SCHEDULERS = ['constant', 'constant_with_warmup', 'linear', 'cosine', 'cosine_with_restarts', 'polynomial'] as const;
export type SchedulerKind = (typeof SCHEDULERS)[number];

/** The LR at optimizer step `step` (0-based). */
export type Schedule = (step: number) => number;

export interface ScheduleSpec {
  kind: SchedulerKind;
  /** The LR after warmup (already scaled for the batch). */
  baseLr: number;
  /** Optimizer steps in the run. */
  totalSteps: number;
  /** Linear warmup from 0; ignored by `constant` (see below). */
  warmupSteps: number;
  /** Hard restarts of cosine_with_restarts (diffusers' num_cycles; default 1). */
  cycles?: number;
  /** Exponent of the polynomial decay (default 1, a straight line to lrEnd). */
  power?: number;
  /** Where the polynomial decay ends (diffusers: 1e-7). */
  lrEnd?: number;
}

/** Rise from 0 to 1 over `w` steps (diffusers: step / max(1, w)). */
const warm = (step: number, w: number) => step / Math.max(1, w);
/** Fraction of the post-warmup part done. */
const progress = (step: number, t: number, w: number) => (step - w) / Math.max(1, t - w);

/** Each kind as a multiplier of baseLr; the table is checked for completeness by the compiler. */
const MULTIPLIERS: { [K in SchedulerKind]: (s: Required<ScheduleSpec>) => Schedule } = {
  // diffusers' get_constant_schedule has no warmup; validateConfig refuses a warmup with it.
  constant: () => () => 1,
  constant_with_warmup: ({ warmupSteps: w }) => (step) => (step < w ? warm(step, w) : 1),
  linear: ({ totalSteps: t, warmupSteps: w }) => (step) => (step < w ? warm(step, w) : Math.max(0, (t - step) / Math.max(1, t - w))),
  cosine: ({ totalSteps: t, warmupSteps: w }) => (step) => (step < w ? warm(step, w) : Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress(step, t, w))))),
  cosine_with_restarts: ({ totalSteps: t, warmupSteps: w, cycles }) => (step) => {
    if (step < w) return warm(step, w);
    const p = progress(step, t, w);
    return p >= 1 ? 0 : Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((cycles * p) % 1))));
  },
  polynomial: ({ totalSteps: t, warmupSteps: w, power, lrEnd, baseLr }) => (step) => {
    if (step < w) return warm(step, w);
    if (step > t) return lrEnd / baseLr;
    const remaining = 1 - (step - w) / Math.max(1, t - w);
    return ((baseLr - lrEnd) * remaining ** power + lrEnd) / baseLr;
  },
};

/** Build the schedule; throws RangeError on a spec no run could have (the config validator reports these first). */
export function makeSchedule(spec: ScheduleSpec): Schedule {
  const s: Required<ScheduleSpec> = { cycles: 1, power: 1, lrEnd: 1e-7, ...spec };
  const bad = (what: string) => new RangeError(`Schedule ${s.kind}: ${what}`);
  if (!Number.isInteger(s.totalSteps) || s.totalSteps < 1) throw bad(`total steps must be a whole number >= 1 (got ${s.totalSteps})`);
  if (!Number.isInteger(s.warmupSteps) || s.warmupSteps < 0 || s.warmupSteps > s.totalSteps) throw bad(`warmup steps must be a whole number from 0 to ${s.totalSteps} (got ${s.warmupSteps})`);
  if (!(s.baseLr >= 0) || !Number.isFinite(s.baseLr)) throw bad(`the learning rate must be a finite number >= 0 (got ${s.baseLr})`);
  if (!Number.isInteger(s.cycles) || s.cycles < 1) throw bad(`cycles must be a whole number >= 1 (got ${s.cycles})`);
  if (!(s.power > 0)) throw bad(`power must be above 0 (got ${s.power})`);
  if (s.baseLr === 0) return () => 0;
  if (s.kind === 'polynomial' && !(s.baseLr > s.lrEnd)) throw bad(`the learning rate (${s.baseLr}) must be above the end LR ${s.lrEnd}`);
  const m = MULTIPLIERS[s.kind](s);
  return (step) => s.baseLr * m(step);
}
