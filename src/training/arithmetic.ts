// The recipe's arithmetic, exactly: effective batch, optimizer steps, scaled learning rates, warmup, epochs.
import type { TrainConfig } from './config.js';

export interface RunPlan {
  effectiveBatch: number;
  /** Optimizer updates (the step counter). */
  steps: number;
  unetLr: number;
  textEncoderLr: number;
  warmupSteps: number;
  imagesPerEpoch: number;
  epochs: number;
  /** Save the LoRA every this many steps. */
  saveEvery: number;
}

/** What the settings imply; throws with the field name when the plan is impossible (warmup longer than the run). */
export function planRun(c: TrainConfig, numImages: number): RunPlan {
  const effectiveBatch = c.batchSize * c.gradAccumulation;
  const steps = Math.max(1, c.divideStepsByBatch ? Math.round(c.baseSteps / effectiveBatch) : c.baseSteps);
  const factor = c.lrScaling === 'linear' ? effectiveBatch : c.lrScaling === 'sqrt' ? Math.sqrt(effectiveBatch) : 1;
  if (c.warmupUnit === 'fraction' && c.warmup >= 1) throw new PlanError('warmup', 'A warmup fraction must be below 1');
  const warmupSteps = c.warmupUnit === 'fraction' ? Math.round(steps * c.warmup) : c.warmup;
  if (warmupSteps > steps) throw new PlanError('warmup', `Warmup (${warmupSteps} steps) is longer than the run (${steps} steps)`);
  const imagesPerEpoch = numImages * c.repeats;
  const epochs = imagesPerEpoch > 0 ? Math.ceil((steps * effectiveBatch) / imagesPerEpoch) : 0;
  const saveEvery = c.saveEvery > 0 ? c.saveEvery : Math.max(1, Math.round(steps / 10));
  return { effectiveBatch, steps, unetLr: c.unetLr * factor, textEncoderLr: c.textEncoderLr * factor, warmupSteps, imagesPerEpoch, epochs, saveEvery };
}

/** An impossible plan, with the field to blame. */
export class PlanError extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
    this.name = 'PlanError';
  }
}
