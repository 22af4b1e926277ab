// The run: pause and stop from outside, the training loop with metrics read one step late, periodic saves and preview images.
import type { GpuDeviceLostError } from '../engine/backend.js';
import type { RgbaImage } from '../model/sampler.js';
import type { RunPlan } from './arithmetic.js';
import type { TrainConfig } from './config.js';
import { StepRate } from './rate.js';
import type { StepResult } from './step.js';
import type { ImageLoss } from './image-losses.js';
import type { ValidationPoint } from './validation.js';

/** One finished optimizer step as the page and the CLI show it (sent one step late, so the GPU is never waited on). */
export interface StepMetrics {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  smoothLoss: number;
  lrUnet: number;
  lrTextEncoder: number;
  stepsPerSec: number;
  imagesPerSec: number;
  elapsedMs: number;
  etaMs: number;
  gpuBytes: number;
}

/** What a run tells its caller: metrics, saved files, preview images, pipeline compilation. */
export interface TrainEvents {
  onMetrics?(m: StepMetrics): void;
  /**
   * A saved LoRA (every `plan.saveEvery` steps and at the end), with the run-state file of the same
   * step (`run-state.ts`): give those bytes back as the file to continue from to go on exactly.
   */
  onCheckpoint?(file: Uint8Array, step: number, state?: Uint8Array): void;
  /** A preview image rendered with the LoRA as trained so far (every `plan.sampleEvery` steps). */
  onPreview?(image: RgbaImage, step: number, prompt: string): void;
  /**
   * Pipelines compiled before the first step (`Trainer.precompile`, run by `run` after the latents):
   * called with 0 of the total first, then as each is ready.
   */
  onCompile?(done: number, total: number): void;
  /** The validation loss (every `plan.validateEvery` steps and at the end), before the save it may cause. */
  onValidation?(v: ValidationPoint): void;
  /** The training loss so far of each image the step just reported trained on (mean over the run), before its metrics. */
  onImageLosses?(losses: ImageLoss[], step: number): void;
}

/** Training stopped because the loss or gradients became NaN or infinite. */
export class NonFiniteLossError extends Error {
  constructor(readonly step: number, readonly lastSavedStep: number) {
    super(
      `The loss became NaN or infinite at step ${step}; no update was applied from it. The LoRA saved at step ${lastSavedStep} is kept. ` +
        'Try a lower learning rate (half of it), a smaller network alpha, or a max grad norm of 1.',
    );
    this.name = 'NonFiniteLossError';
  }
}

/** The GPU went away mid-run (driver reset, GPU removed): what happened, where, and what is kept. */
export class DeviceLostDuringTrainingError extends Error {
  constructor(override readonly cause: GpuDeviceLostError, readonly step: number, readonly lastSavedStep: number) {
    super(
      `${cause.message.replace(/ Nothing more.*$/, '')} Training stopped at step ${step}. ` +
        (lastSavedStep > 0 ? `The LoRA saved at step ${lastSavedStep} is kept: ` : 'Nothing was saved yet: ') +
        'load the model again and start, choosing that file under "Continue an earlier LoRA" to go on from it.',
    );
    this.name = 'DeviceLostDuringTrainingError';
  }
}

/** Pause, unpause and stop from outside the loop. */
export class RunControl {
  state: 'running' | 'paused' | 'stopping' = 'running';
  /** Told when the loop really stops to wait on a pause (true) and when it goes on (false). */
  onWaiting?: (waiting: boolean) => void;
  private wake: (() => void) | null = null;
  /** Pause after the step being encoded (the loop waits in `waitWhilePaused`). */
  pause(): void {
    if (this.state === 'running') this.state = 'paused';
  }
  /** Go on after a pause (not to be confused with continuing an earlier LoRA file: the Trainer's `init`). */
  unpause(): void {
    if (this.state === 'paused') this.state = 'running';
    this.wake?.();
  }
  /** End the run after the current step (a pause is left too); the run then saves as at its end. */
  stop(): void {
    this.state = 'stopping';
    this.wake?.();
  }
  /** Resolves at once unless paused; else when unpaused or stopped. */
  async waitWhilePaused(): Promise<void> {
    if (this.state !== 'paused') return;
    this.onWaiting?.(true);
    while (this.state === 'paused') await new Promise<void>((r) => (this.wake = r));
    this.onWaiting?.(false);
  }
}

/** What the loop drives: the Trainer. */
export interface LoopTarget {
  readonly plan: RunPlan;
  readonly config: TrainConfig;
  readonly events: TrainEvents;
  readonly step: number;
  readonly epoch: number;
  readonly lastSavedStep: number;
  /** Draw the next effective batch and encode its optimizer step; resolves once the GPU has run it. */
  nextStep(): Promise<StepResult>;
  /** The learning rates of update `index` (0-based). */
  learningRates(index: number): { unet: number; te: number };
  save(): Promise<unknown>;
  emitPreview(): Promise<void>;
  /** The validation loss now (absent or false: none this run); true when it is the best so far, whose LoRA the loop then saves. */
  validate?(): Promise<boolean>;
  /** Bytes the GPU holds in live buffers now. */
  liveBytes(): number;
}

/** A step encoded, its result still on the way. */
interface InFlight {
  step: number;
  result: Promise<StepResult>;
}

/** Whether a periodic event (save, preview) falls after update `step`: every `every` steps, the last one aside (the end has its own). */
const due = (step: number, every: number, total: number) => step % every === 0 && step < total;

/**
 * Run to the end (or until stopped), saving every `plan.saveEvery` steps and at the end; metrics
 * arrive one step late (step n+1 is encoded while step n runs). A run stopped before its first step
 * saves nothing (an earlier LoRA is not replaced by an untrained one).
 */
export async function trainingLoop(t: LoopTarget, control: RunControl): Promise<void> {
  const clock = new StepClock(t);
  const previews = t.config.sampleSteps > 0 && !!t.events.onPreview;
  let pending: InFlight | null = null;
  while (t.step < t.plan.steps && control.state !== 'stopping') {
    if (control.state === 'paused') {
      // The finished step is reported before the wait, so nothing moves on the page while paused.
      pending = await clock.settle(pending);
      await clock.outside(() => control.waitWhilePaused());
      clock.restartRate();
    }
    if ((control.state as string) === 'stopping') break;
    const cur: InFlight = { step: t.step + 1, result: t.nextStep() };
    if (pending) await clock.report(pending);
    pending = cur;
    const saving = due(t.step, t.plan.saveEvery, t.plan.steps);
    const previewing = previews && due(t.step, t.plan.sampleEvery, t.plan.steps);
    const validating = !!t.validate && t.plan.validateEvery > 0 && due(t.step, t.plan.validateEvery, t.plan.steps);
    // The step's own time is measured up to its result; what follows is not step time.
    if (saving || previewing || validating) pending = await clock.settle(pending);
    // A new best validation loss is saved too, so the best step's LoRA can always be downloaded.
    const best = validating && (await clock.outside(() => t.validate!()));
    if (saving || best) await clock.outside(() => t.save());
    if (previewing) await clock.outside(() => t.emitPreview());
  }
  await clock.settle(pending);
  if (t.step === 0) return;
  if (t.validate && t.plan.validateEvery > 0) await t.validate();
  await t.save();
  if (previews) await t.emitPreview();
}

/**
 * The run's metrics: the debiased loss average and the step rate. Steps/s and the ETA count step
 * time only: previews, saves and pauses (run through `outside`) are left out.
 */
class StepClock {
  private readonly t0 = performance.now();
  private readonly rate = new StepRate();
  /** Milliseconds spent outside steps. */
  private excluded = 0;
  /** Exponential moving average of the loss (decay 0.95) and how many losses it has seen, for debiasing. */
  private ema = 0;
  private emaCount = 0;

  constructor(private readonly t: LoopTarget) {}

  async outside<T>(f: () => Promise<T>): Promise<T> {
    const a = performance.now();
    const r = await f();
    this.excluded += performance.now() - a;
    return r;
  }

  restartRate(): void {
    this.rate.reset();
  }

  /** Report the step in flight, if any; returns null (nothing in flight any more). */
  async settle(p: InFlight | null): Promise<null> {
    if (p) await this.report(p);
    return null;
  }

  /** Wait for a step's result and send its metrics; a non-finite one ends the run. */
  async report(p: InFlight): Promise<void> {
    const { t } = this;
    const r = await p.result;
    if (r.nonFinite) throw new NonFiniteLossError(p.step, t.lastSavedStep);
    // Debiased as Adam's moments: early values average the losses so far instead of leaning on the first.
    this.ema = 0.95 * this.ema + 0.05 * r.loss;
    this.emaCount++;
    const now = performance.now();
    const stepClock = now - this.excluded;
    this.rate.mark(p.step, stepClock);
    // The recent rate once there is one; before that, the run's average (which holds the compilation).
    const sps = this.rate.perSecond() ?? p.step / ((stepClock - this.t0) / 1000);
    const lr = t.learningRates(p.step - 1);
    t.events.onMetrics?.({
      step: p.step,
      totalSteps: t.plan.steps,
      epoch: t.epoch,
      loss: r.loss,
      smoothLoss: this.ema / (1 - 0.95 ** this.emaCount),
      lrUnet: lr.unet,
      lrTextEncoder: t.config.trainTextEncoder ? lr.te : 0,
      stepsPerSec: sps,
      imagesPerSec: sps * t.plan.effectiveBatch,
      elapsedMs: now - this.t0,
      etaMs: (Math.max(0, t.plan.steps - p.step) / Math.max(sps, 1e-9)) * 1000,
      gpuBytes: t.liveBytes(),
    });
  }
}
