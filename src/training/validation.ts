// Validation loss: which images validate (held out, or some training images), their fixed noise and timesteps, and the loss forward only.
//
// Every random choice of a validation pass is fixed by the seed and the image's name, never drawn from
// the training's streams: the loss at step 100 and at step 200 differ only by the LoRA, two runs with
// the same seed validate on the same noise, and turning validation on changes nothing in the training.
import { noGrad } from '../engine/autograd.js';
import { huberLoss, mseLoss } from '../engine/index.js';
import { keep, scope, tensor, type Tensor } from '../engine/tensor.js';
import { clipForward } from '../model/clip.js';
import { Layers } from '../model/layers.js';
import { unetForward } from '../model/unet.js';
import { PlanError, roundHalfEven } from './arithmetic.js';
import { processCaption } from './captions.js';
import type { TrainConfig } from './config.js';
import type { Latent, TrainItem } from './data.js';
import { applyNoiseOffset } from './noise.js';
import { Rng } from './rng.js';
import { noisedInputs, type StepModel, type StepSettings } from './step.js';

/** The timesteps every validation image is noised at (evenly over SD's 1000; one forward pass each). */
export const VALIDATION_TIMESTEPS: readonly number[] = [100, 300, 500, 700, 900];
/** With `validation: 'training'`, at most this many training images validate (chosen by the seed). */
export const MAX_TRAINING_VALIDATION_IMAGES = 16;

/** The run's images split for validation: what trains, what validates (by index into `train` when validating on training images). */
export interface ValidationSplit {
  train: TrainItem[];
  /** Held-out images (holdout), or training images (training: the same objects as in `train`); empty when off. */
  validation: TrainItem[];
  /** 'training': `validation` are training images, whose latents are the training ones. */
  onTraining: boolean;
}

/**
 * Split the images as the settings say. Holdout keeps out the images marked for validation and
 * round(validationSplit × the others) more (at least one when the split is above 0), chosen by the
 * seed, never all of them; training validates on up to MAX_TRAINING_VALIDATION_IMAGES training images.
 * Throws PlanError naming the setting to change when the split leaves nothing to train or to validate.
 */
export function splitValidation(items: readonly TrainItem[], c: Pick<TrainConfig, 'validation' | 'validationSplit' | 'seed'>): ValidationSplit {
  const rng = new Rng(c.seed).fork('validation-split');
  if (c.validation === 'off') return { train: [...items], validation: [], onTraining: false };
  if (c.validation === 'training') {
    const order = rng.shuffle(items.map((_, i) => i)).slice(0, MAX_TRAINING_VALIDATION_IMAGES).sort((a, b) => a - b);
    return { train: [...items], validation: order.map((i) => items[i]!), onTraining: true };
  }
  const marked = items.filter((i) => i.validation);
  const rest = items.filter((i) => !i.validation);
  if (!rest.length) throw new PlanError('validation', `Every image (${items.length}) is marked for validation: leave at least one to train on, or turn validation off`);
  const k = c.validationSplit > 0 ? Math.min(rest.length - 1, Math.max(1, roundHalfEven(rest.length * c.validationSplit))) : 0;
  const out = new Set(rng.shuffle(rest.map((_, i) => i)).slice(0, k));
  const validation = [...marked, ...rest.filter((_, i) => out.has(i))];
  if (!validation.length) {
    const why = rest.length === 1 ? 'a split cannot hold out the only image' : 'the validation split is 0';
    throw new PlanError('validationSplit', `No image is held out for validation (${why}): set a validation split above 0 with at least 2 images, mark images for validation, or turn validation off`);
  }
  return { train: rest.filter((_, i) => !out.has(i)), validation, onTraining: false };
}

/** One validation forward pass: an image's latent [C, h, w] noised at a fixed timestep with fixed noise, and its caption. */
export interface ValidationExample {
  name: string;
  latent: Float32Array;
  noise: Float32Array;
  timestep: number;
  caption: string;
  /** Latent height and width. */
  height: number;
  width: number;
}

/**
 * The validation passes: per image (unflipped latent) and per VALIDATION_TIMESTEPS entry, noise drawn
 * from a stream named after the seed, the image and the timestep (with the run's noise offset), and the
 * caption with the trigger word but no shuffling or dropout.
 */
export function validationExamples(items: readonly TrainItem[], latents: readonly Latent[], c: TrainConfig, channels: number, factor: number): ValidationExample[] {
  const base = new Rng(c.seed).fork('validation');
  const captionOptions = { shuffle: false, keepTokens: c.keepTokens, captionDropout: 0, tagDropout: 0, triggerWord: c.triggerWord };
  return items.flatMap((it, i) => {
    const l = latents[i]!;
    const caption = processCaption(it.caption, captionOptions, base.fork('caption')); // nothing random is drawn: no shuffle, no dropout
    return VALIDATION_TIMESTEPS.map((timestep) => {
      const rng = base.fork(`${it.name}@${timestep}`);
      const noise = applyNoiseOffset(rng.normals(l.data.length), channels, c.noiseOffset, rng);
      return { name: it.name, latent: l.data, noise, timestep, caption, height: l.bucket.height / factor, width: l.bucket.width / factor };
    });
  });
}

/** The U-Net's conditioning for one caption without gradient: the cached output, else the text encoder (with its LoRA, no dropout, when trained). */
function frozenContext(m: StepModel, s: StepSettings, caption: string): Tensor {
  const T = m.clip.config.maxPositions;
  const backend = m.lora.arenas.unet.backend;
  const cached = m.contexts?.get(caption);
  if (cached) return tensor(backend, cached, [1, T, cached.length / T]);
  const layers = new Layers(m.clip.weights, s.trainTextEncoder && m.lora.arenas.te ? m.lora.adapter('te') : null);
  return clipForward(layers, m.clip.config, m.tokenizer.encodeForModel(caption, T), 1, s.clipSkip);
}

/** One pass's loss [] (the training's loss and min-SNR weight, the LoRA without dropout), forward only; the caller owns it. */
export function validationPassLoss(m: StepModel, s: StepSettings, e: ValidationExample): Tensor {
  const backend = m.lora.arenas.unet.backend;
  const shape = [1, m.unet.config.inChannels, e.height, e.width];
  const { noisy, target, weights } = noisedInputs(s, { latents: e.latent, noise: e.noise, timesteps: [e.timestep], captions: [e.caption], height: e.height, width: e.width });
  return keep(
    noGrad(() =>
      scope(() => {
        const unet = new Layers(m.unet.weights, m.lora.adapter('unet'));
        const pred = unetForward(unet, m.unet.config, tensor(backend, noisy, shape), [e.timestep], frozenContext(m, s, e.caption));
        const tgt = tensor(backend, target, shape);
        const wt = tensor(backend, weights, [1]);
        return s.loss === 'l2' ? mseLoss(pred, tgt, wt) : huberLoss(pred, tgt, s.huberDelta, wt);
      }),
    ),
  );
}

/** A validation pass's result: the mean loss over every image and timestep, and each image's mean over its timesteps. */
export interface ValidationLoss {
  loss: number;
  images: { name: string; loss: number }[];
}

/** The validation loss of the LoRA as it is now: every pass encoded, then read back once. */
export async function validationLoss(m: StepModel, s: StepSettings, examples: readonly ValidationExample[]): Promise<ValidationLoss> {
  const losses = examples.map((e) => validationPassLoss(m, s, e));
  m.lora.arenas.unet.backend.flush();
  const values = await Promise.all(losses.map(async (l) => (await l.read())[0]!));
  for (const l of losses) l.dispose();
  const byImage = new Map<string, number[]>();
  examples.forEach((e, i) => byImage.set(e.name, [...(byImage.get(e.name) ?? []), values[i]!]));
  const mean = (v: readonly number[]) => v.reduce((a, x) => a + x, 0) / v.length;
  return { loss: mean(values), images: [...byImage].map(([name, v]) => ({ name, loss: mean(v) })) };
}

/** A validation loss as the run reports it, with whether it is the best so far (lowest; the first is). */
export interface ValidationPoint extends ValidationLoss {
  step: number;
  best: boolean;
}

/** The run's validation history and its best step, for the events and the LoRA file's metadata. */
export class ValidationHistory {
  readonly points: { step: number; loss: number }[] = [];
  best: { step: number; loss: number } | null = null;

  /** Add the loss at `step`; returns the point to report. A non-finite loss is recorded but never best. */
  add(step: number, r: ValidationLoss): ValidationPoint {
    this.points.push({ step, loss: r.loss });
    const best = Number.isFinite(r.loss) && (!this.best || r.loss < this.best.loss);
    if (best) this.best = { step, loss: r.loss };
    return { step, best, ...r };
  }

  /** What a run state keeps of it (JSON), so a continued run goes on with its history and best. */
  snapshot(): { points: { step: number; loss: number }[]; best: { step: number; loss: number } | null } {
    return { points: this.points.map((p) => ({ ...p })), best: this.best && { ...this.best } };
  }

  /** Put back a `snapshot` (a malformed one is refused by name). */
  restore(s: unknown): void {
    // JSON writes a non-finite loss as null: it comes back as NaN.
    const ok = (p: unknown): p is { step: number; loss: number | null } => !!p && typeof p === 'object' && Number.isInteger((p as { step: unknown }).step) && (typeof (p as { loss: unknown }).loss === 'number' || (p as { loss: unknown }).loss === null);
    const x = s as { points?: unknown; best?: unknown } | null;
    if (!x || !Array.isArray(x.points) || !x.points.every(ok) || (x.best !== null && !ok(x.best))) throw new Error('The run state\'s validation history is damaged: continue without it by starting from the LoRA file instead');
    this.points.splice(0, this.points.length, ...x.points.map((p) => ({ step: p.step, loss: p.loss ?? NaN })));
    this.best = x.best ? { step: x.best.step, loss: x.best.loss ?? NaN } : null;
  }

  /** The last point, if it was taken at `step`. */
  at(step: number): { step: number; loss: number } | undefined {
    const last = this.points.at(-1);
    return last?.step === step ? last : undefined;
  }
}

/** What a LoRA file records of its run's validation (metadata.ts). */
export interface ValidationSummary {
  mode: TrainConfig['validation'];
  split: number;
  every: number;
  images: number;
  timesteps: readonly number[];
  /** Every validation loss so far, [step, loss]. */
  history: [number, number][];
  best: { step: number; loss: number } | null;
}

/** One run's validation: its split, its passes (once the latents are encoded) and its history. */
export class RunValidation {
  readonly history = new ValidationHistory();
  private examples: ValidationExample[] = [];

  constructor(readonly split: ValidationSplit, private readonly config: TrainConfig, private readonly every: number) {}

  /** Held-out images whose latents `prepare` encodes (0 when validating on training images). */
  get toEncode(): number {
    return this.split.onTraining ? 0 : this.split.validation.length;
  }

  /**
   * Draw the passes: held-out images are encoded with `encode` (unflipped), training images reuse
   * `trainLatents`. False when the encoding was stopped.
   */
  async prepare(encode: (items: TrainItem[]) => Promise<Latent[] | null>, trainLatents: readonly Latent[], channels: number, factor: number): Promise<boolean> {
    const { train, validation, onTraining } = this.split;
    const latents = onTraining ? validation.map((it) => trainLatents[train.indexOf(it)]!) : await encode(validation);
    if (!latents) return false;
    this.examples = validationExamples(validation, latents, this.config, channels, factor);
    return true;
  }

  /** The validation loss at `step` with the model as it is now; null when already taken at this step. */
  async run(step: number, m: StepModel, s: StepSettings): Promise<ValidationPoint | null> {
    if (this.history.at(step) || !this.examples.length) return null;
    return this.history.add(step, await validationLoss(m, s, this.examples));
  }

  summary(): ValidationSummary {
    const { validation, validationSplit } = this.config;
    const history = this.history.points.map((p) => [p.step, p.loss] as [number, number]);
    return { mode: validation, split: validationSplit, every: this.every, images: this.split.validation.length, timesteps: VALIDATION_TIMESTEPS, history, best: this.history.best };
  }
}
