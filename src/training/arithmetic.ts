// The recipe's arithmetic, exactly: effective batch, optimizer steps, scaled learning rates, warmup, epochs, cadences.
import type { TrainConfig } from './config.js';
import { makeSchedule, type Schedule } from './schedule.js';

/** What a run's settings imply, shown before training and used by the loop. */
export interface RunPlan {
  /** batchSize × gradAccumulation [images per update]. */
  effectiveBatch: number;
  /** Optimizer updates in the run (the step counter): from baseSteps, or from maxEpochs when set. */
  steps: number;
  /** The factor both LRs were multiplied by (1, b or √b; 1 for Prodigy). */
  lrFactor: number;
  /** Scaled U-Net and text-encoder LRs (the schedules' peak). */
  unetLr: number;
  textEncoderLr: number;
  /** Steps of linear warmup. */
  warmupSteps: number;
  /** Σ over images of its repeats (its `N_` folder's, else config.repeats): numImages × repeats when all use the setting. */
  imagesPerEpoch: number;
  /** ceil(imagesPerEpoch / batchSize); buckets that do not fill their last batch can add a few. */
  microBatchesPerEpoch: number;
  /** maxEpochs when set, else ceil(steps × effectiveBatch / imagesPerEpoch); 0 without images. */
  epochs: number;
  /** Save the LoRA every this many steps (and at the end). */
  saveEvery: number;
  /** Render samples every this many steps. */
  sampleEvery: number;
  /** Compute the validation loss every this many steps (and at the end); 0 when validation is off. */
  validateEvery: number;
}

/** An impossible plan, with the config field to blame. */
export class PlanError extends Error {
  constructor(
    readonly field: keyof TrainConfig | 'numImages',
    message: string,
  ) {
    super(message);
    this.name = 'PlanError';
  }
}

/**
 * Round to the nearest integer, halves to even. The guide computes in PowerShell, whose
 * [Math]::Round rounds halves to even (2000 / 32 = 62.5 → 62), as Python's round does.
 */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d !== 0.5) return d < 0.5 ? f : f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** Optimizer steps: round(baseSteps / effective batch) when dividing is on, else baseSteps; at least 1. */
export function optimizerSteps(c: Pick<TrainConfig, 'baseSteps' | 'divideStepsByBatch' | 'batchSize' | 'gradAccumulation'>): number {
  const eff = c.batchSize * c.gradAccumulation;
  return Math.max(1, c.divideStepsByBatch ? roundHalfEven(c.baseSteps / eff) : c.baseSteps);
}

/** The LR multiplier for an effective batch b: none 1, linear b, sqrt √b. LR-free Prodigy always 1, as the guide sets it. */
export function lrFactor(c: Pick<TrainConfig, 'lrScaling' | 'optimizer'>, effectiveBatch: number): number {
  if (c.optimizer === 'prodigy') return 1;
  switch (c.lrScaling) {
    case 'none':
      return 1;
    case 'linear':
      return effectiveBatch;
    case 'sqrt':
      return Math.sqrt(effectiveBatch);
    default:
      return c.lrScaling satisfies never;
  }
}

/** Warmup steps: round(steps × w) for a fraction 0 <= w < 1, or w itself when given in steps; never longer than the run. */
export function warmupSteps(c: Pick<TrainConfig, 'warmup' | 'warmupUnit' | 'scheduler'>, steps: number): number {
  if (c.warmupUnit === 'fraction') {
    if (!(c.warmup >= 0 && c.warmup < 1)) throw new PlanError('warmup', `A warmup fraction must be at least 0 and below 1 (got ${c.warmup})`);
  } else if (!Number.isInteger(c.warmup) || c.warmup < 0) throw new PlanError('warmup', `Warmup steps must be a whole number >= 0 (got ${c.warmup})`);
  const w = c.warmupUnit === 'fraction' ? roundHalfEven(steps * c.warmup) : c.warmup;
  if (w > steps) throw new PlanError('warmup', `Warmup (${w} steps) is longer than the run (${steps} steps)`);
  if (w > 0 && c.scheduler === 'constant') throw new PlanError('warmup', 'The constant schedule has no warmup: set warmup to 0, or pick constant_with_warmup');
  return w;
}

/** A run's images: how many (each repeated config.repeats times), or each image with its own repeats (absent: config.repeats). */
export type PlanImages = number | readonly { repeats?: number }[];

/** Images drawn per epoch: Σ of each image's own repeats (its kohya `N_` folder's), else the Repeats setting. */
export function epochImages(c: Pick<TrainConfig, 'repeats'>, images: PlanImages): number {
  if (typeof images === 'number') {
    if (!Number.isInteger(images) || images < 0) throw new PlanError('numImages', `The number of images must be a whole number >= 0 (got ${images})`);
    return images * c.repeats;
  }
  let sum = 0;
  for (const i of images) {
    const r = i.repeats ?? c.repeats;
    if (!Number.isInteger(r) || r < 1) throw new PlanError('numImages', `An image's repeats must be a whole number >= 1 (got ${r})`);
    sum += r;
  }
  return sum;
}

/** Everything the settings imply for these images; throws PlanError naming the field when impossible. */
export function planRun(c: TrainConfig, images: PlanImages): RunPlan {
  const effectiveBatch = c.batchSize * c.gradAccumulation;
  const imagesPerEpoch = epochImages(c, images);
  const microBatchesPerEpoch = Math.ceil(imagesPerEpoch / c.batchSize);
  // Given in epochs (kohya's max_train_epochs): whole epochs of updates, a partial last update counting as one.
  const steps = c.maxEpochs > 0 ? Math.max(1, c.maxEpochs * Math.ceil(microBatchesPerEpoch / c.gradAccumulation)) : optimizerSteps(c);
  const factor = lrFactor(c, effectiveBatch);
  const tenth = Math.max(1, roundHalfEven(steps / 10));
  return {
    effectiveBatch,
    steps,
    lrFactor: factor,
    unetLr: c.unetLr * factor,
    textEncoderLr: c.textEncoderLr * factor,
    warmupSteps: warmupSteps(c, steps),
    imagesPerEpoch,
    microBatchesPerEpoch,
    epochs: imagesPerEpoch === 0 ? 0 : c.maxEpochs > 0 ? c.maxEpochs : Math.ceil((steps * effectiveBatch) / imagesPerEpoch),
    saveEvery: c.saveEvery > 0 ? c.saveEvery : tenth,
    sampleEvery: c.sampleEvery > 0 ? c.sampleEvery : tenth,
    validateEvery: c.validation === 'off' ? 0 : c.validateEvery > 0 ? c.validateEvery : tenth,
  };
}

/** The U-Net and text-encoder LR schedules of a planned run (the text encoder's is 0 when it is frozen). */
export function planSchedules(c: TrainConfig, plan: RunPlan): { unet: Schedule; textEncoder: Schedule } {
  const make = (baseLr: number) => makeSchedule({ kind: c.scheduler, baseLr, totalSteps: plan.steps, warmupSteps: plan.warmupSteps, cycles: c.lrCycles, power: c.lrPower });
  return { unet: make(plan.unetLr), textEncoder: c.trainTextEncoder ? make(plan.textEncoderLr) : () => 0 };
}
