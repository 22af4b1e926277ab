// The one training configuration: every field documented, defaults in one place (the reference recipe), validated once.
//
// Precision: the engine computes and keeps LoRA weights, gradients and optimizer state in fp32 (the
// frozen base model may sit on the GPU as f16); there is no fp16/bf16 autocast, so kohya's
// `ss_mixed_precision` is "no". `savePrecision` only chooses the dtype written to the file.
import { z } from 'zod';
import { bucketSideLimits } from './buckets.js';
import { optimizerSteps, PlanError, warmupSteps } from './arithmetic.js';
import { SCHEDULERS, type SchedulerKind } from './schedule.js';
import { NETWORK_TYPES, type NetworkType } from '../model/lycoris.js';

export { SCHEDULERS, NETWORK_TYPES };
export const OPTIMIZERS = ['adamw', 'lion', 'prodigy', 'sgd'] as const;
export type OptimizerKind = (typeof OPTIMIZERS)[number];
/** The other settings that pick one of a few values: the types, the schema and the page's selects all read these. */
export const CHOICES = {
  lrScaling: ['none', 'linear', 'sqrt'],
  warmupUnit: ['fraction', 'steps'],
  prediction: ['epsilon', 'v_prediction'],
  loss: ['l2', 'huber'],
  savePrecision: ['fp16', 'fp32'],
  validation: ['off', 'holdout', 'training'],
} as const;
type Choice<K extends keyof typeof CHOICES> = (typeof CHOICES)[K][number];

/** Everything a run needs besides the model and the images. Units in brackets, allowed range after. */
export interface TrainConfig {
  // ---- length and batch ----
  /** Optimizer steps at effective batch 1 [steps], 1 to 1,000,000; divided by the effective batch when `divideStepsByBatch` is on. Recipe: 2000. */
  baseSteps: number;
  /**
   * Run length in epochs instead [epochs], 0 to 100,000; 0 uses `baseSteps`. When set, the run is
   * epochs × ceil(ceil(images × repeats / batchSize) / gradAccumulation) optimizer steps, as kohya's
   * max_train_epochs. Default 0.
   */
  maxEpochs: number;
  /** Divide `baseSteps` by the effective batch (rounded), so the number of images seen stays the same. Recipe: on. */
  divideStepsByBatch: boolean;
  /** Images per forward/backward pass [images], 1 to 64; more needs more GPU memory. Recipe: 1. */
  batchSize: number;
  /** Passes whose gradients are averaged into one update [passes], 1 to 256; costs time, not memory. Recipe: 1. */
  gradAccumulation: number;

  // ---- learning rate ----
  /** U-Net LoRA learning rate at effective batch 1, 0 to 10 (a multiplier, normally 1, for Prodigy). Recipe: 1e-4. */
  unetLr: number;
  /** Text-encoder LoRA learning rate at effective batch 1, 0 to 10. Recipe: 5e-5. */
  textEncoderLr: number;
  /** How both LRs grow with the effective batch b: none, linear (×b) or sqrt (×√b). Recipe: linear. */
  lrScaling: Choice<'lrScaling'>;
  /** Shape of the LR over the run (definitions in schedule.ts). Recipe: cosine. */
  scheduler: SchedulerKind;
  /** Hard restarts of `cosine_with_restarts` [cycles], 1 to 100. Default 1. */
  lrCycles: number;
  /** Exponent of the `polynomial` decay to 1e-7, 0.01 to 10 (1 = straight line). Default 1. */
  lrPower: number;
  /** Warmup length: a fraction of the steps (0 <= w < 1) or a whole number of steps, per `warmupUnit`. Recipe: 0.1. */
  warmup: number;
  /** Whether `warmup` is a fraction of the run or a number of steps. Recipe: fraction. */
  warmupUnit: Choice<'warmupUnit'>;

  // ---- optimizer ----
  /** adamw (recipe), lion, prodigy (sets its own step size; LR is a multiplier, 1) or sgd (with momentum). */
  optimizer: OptimizerKind;
  /** First moment decay of AdamW, Lion and Prodigy, 0 to 0.9999. Recipe: 0.9. */
  beta1: number;
  /** Second moment decay of AdamW, Lion and Prodigy, 0 to 0.99999. Recipe: 0.99. */
  beta2: number;
  /** Decoupled weight decay, 0 to 1. Recipe: 0.01. */
  weightDecay: number;
  /** SGD momentum, 0 to 0.999. Default 0.9. */
  momentum: number;
  /** Clip the global gradient norm to this, 0 to 1000; 0 disables clipping. Recipe: 1. */
  maxGradNorm: number;

  // ---- network ----
  /**
   * The network type: 'lora' (kohya's LoRA; LoCon with a conv dim), or from LyCORIS 'loha' (Hadamard product
   * of two low-rank pairs), 'lokr' (Kronecker product, its larger factor low-rank) or 'dora' (LoRA with
   * a trained magnitude per input channel). Dim, alpha and conv dim apply to each; network dropout to LoRA only. Default 'lora'.
   */
  networkType: NetworkType;
  /** LoRA rank [channels], 1 to 1024. Recipe: 16. */
  networkDim: number;
  /** LoRA alpha, 0.001 to 1024; the LoRA output is scaled by alpha / dim. Recipe: 16. */
  networkAlpha: number;
  /** Dropout probability on the LoRA down-projection output, training only, 0 to 0.9. Recipe: 0.1. */
  networkDropout: number;
  /** LoCon rank for the U-Net's 3x3 convolutions [channels], 0 to 1024; 0 leaves them alone. Default 0. */
  convDim: number;
  /** LoCon alpha, 0 to 1024 (scale convAlpha / convDim); above 0 when convDim is. Default: convDim, as kohya (a partial config without it gets its conv dim). */
  convAlpha: number;
  /** Train a text-encoder LoRA too; off trains the U-Net only. Recipe: on. */
  trainTextEncoder: boolean;

  // ---- images and captions ----
  /** Training resolution [pixels], 64 to 2048, a multiple of 64: buckets keep at most resolution² pixels. Recipe: 512. */
  resolution: number;
  /** Aspect-ratio buckets instead of square crops. Recipe: on. */
  enableBuckets: boolean;
  /** Bucket sides are multiples of this [pixels], 64 to 512, a multiple of 64 (the U-Net halves the latent three times). Recipe: 64. */
  bucketStep: number;
  /** Smallest bucket side [pixels], 64 to 4096, a multiple of `bucketStep`. Default: derived from resolution and maxAspect (320 at 512). */
  minBucket: number;
  /** Largest bucket side [pixels], 64 to 4096, a multiple of `bucketStep`. Default: derived from resolution and maxAspect (768 at 512). */
  maxBucket: number;
  /** Widest aspect ratio (long side / short side), 1 to 4; sets the default min/max bucket sides. Recipe: 2. */
  maxAspect: number;
  /** Random horizontal flips. Recipe: on. */
  flipAug: boolean;
  /** Shuffle caption tags after the kept ones, per sample. Recipe: on. */
  shuffleCaptions: boolean;
  /** Leading tags never shuffled or dropped [tags], 0 to 75. Recipe: 1. */
  keepTokens: number;
  /** Probability of training a sample with an empty caption, 0 to 1. Recipe: 0. */
  captionDropout: number;
  /** Probability of dropping each non-kept tag, 0 to 1. Default 0. */
  tagDropout: number;
  /** Tag put first in every caption (the word that calls the LoRA), up to 200 characters; '' for none. */
  triggerWord: string;
  /** Times each image appears per epoch, 1 to 1000. Default 1. */
  repeats: number;

  // ---- noise and loss ----
  /** Offset noise strength, 0 to 1: noise += offset × N(0, 1) per sample and channel. Recipe: 0.01. */
  noiseOffset: number;
  /** Min-SNR-γ loss weighting, 0 to 100; 0 turns it off. Recipe: 5. */
  minSnrGamma: number;
  /** What the U-Net predicts: the noise (SD 1.x) or v (v-models). Recipe: epsilon. */
  prediction: Choice<'prediction'>;
  /** Rescale the noise schedule to zero terminal SNR (Lin et al. 2023); needs v-prediction. Default off. */
  zeroTerminalSnr: boolean;
  /** Per-element loss: squared error or pseudo-Huber. Default l2. */
  loss: Choice<'loss'>;
  /** Pseudo-Huber delta (kohya's huber_c), 0.0001 to 100; quadratic below it, linear above. Default 0.1. */
  huberDelta: number;
  /** Use the text encoder's output n−1 layers before the last (A1111 convention), 1 to 12. Recipe: 1. */
  clipSkip: number;

  // ---- reproducibility and memory ----
  /** Seed of every random choice (noise, timesteps, order, flips, captions, dropout), 0 to 4294967295. Recipe: 0. */
  seed: number;
  /** Encode captions once; only with a frozen text encoder and fixed captions. Default off. */
  cacheTextEncoderOutputs: boolean;
  /** Recompute activations in backward to save memory (about a third slower). Default on. */
  gradientCheckpointing: boolean;

  // ---- output ----
  /** Save the LoRA every this many steps, 0 to 1,000,000; 0 = every tenth of the run. Recipe: a tenth. */
  saveEvery: number;
  /** Render sample images every this many steps, 0 to 1,000,000; 0 = every tenth of the run. Recipe: a tenth. */
  sampleEvery: number;
  /** Prompt of the sample images; empty = the trigger word and the first image's caption. */
  samplePrompt: string;
  /** DDIM steps per sample image, 0 to 150; 0 = no sample images. Default 20. */
  sampleSteps: number;
  /** Classifier-free guidance scale of the sample images, 1 to 30. Default 7.5. */
  sampleGuidance: number;
  /** Dtype of the saved LoRA weights (and alphas). Recipe: fp16. */
  savePrecision: Choice<'savePrecision'>;
  /** Name of the run and of the downloaded file: 1 to 100 letters, digits, spaces, dots, dashes, underscores. */
  runName: string;

  // ---- validation (validation.ts) ----
  /**
   * The validation set: off; holdout (images marked for validation on the page, plus `validationSplit`
   * of the others, are kept out of training); or training (kohya-style deterministic validation on up to
   * 16 of the training images). Its loss uses fixed noise and timesteps, so runs and steps compare. Default off.
   */
  validation: Choice<'validation'>;
  /** Holdout only: the fraction of the (unmarked) images held out, 0 to 0.5, chosen by the seed; at least one image when above 0, never all. Default 0.1. */
  validationSplit: number;
  /** Compute the validation loss every this many steps, 0 to 1,000,000, and at the end; 0 = every tenth of the run. Default 0. */
  validateEvery: number;
}

/** The reference recipe's defaults (../shared/reference/training-recipe.md); the only place defaults live. */
export const DEFAULT_CONFIG: Readonly<TrainConfig> = Object.freeze({
  baseSteps: 2000,
  maxEpochs: 0,
  divideStepsByBatch: true,
  batchSize: 1,
  gradAccumulation: 1,
  unetLr: 1e-4,
  textEncoderLr: 5e-5,
  lrScaling: 'linear',
  scheduler: 'cosine',
  lrCycles: 1,
  lrPower: 1,
  warmup: 0.1,
  warmupUnit: 'fraction',
  optimizer: 'adamw',
  beta1: 0.9,
  beta2: 0.99,
  weightDecay: 0.01,
  momentum: 0.9,
  maxGradNorm: 1,
  networkType: 'lora',
  networkDim: 16,
  networkAlpha: 16,
  networkDropout: 0.1,
  convDim: 0,
  convAlpha: 0,
  trainTextEncoder: true,
  resolution: 512,
  enableBuckets: true,
  bucketStep: 64,
  ...(({ min, max }) => ({ minBucket: min, maxBucket: max }))(bucketSideLimits(512, 2, 64)),
  maxAspect: 2,
  flipAug: true,
  shuffleCaptions: true,
  keepTokens: 1,
  captionDropout: 0,
  tagDropout: 0,
  triggerWord: '',
  repeats: 1,
  noiseOffset: 0.01,
  minSnrGamma: 5,
  prediction: 'epsilon',
  zeroTerminalSnr: false,
  loss: 'l2',
  huberDelta: 0.1,
  clipSkip: 1,
  seed: 0,
  cacheTextEncoderOutputs: false,
  gradientCheckpointing: true,
  saveEvery: 0,
  sampleEvery: 0,
  samplePrompt: '',
  sampleSteps: 20,
  sampleGuidance: 7.5,
  savePrecision: 'fp16',
  runName: 'my-lora',
  validation: 'off',
  validationSplit: 0.1,
  validateEvery: 0,
} satisfies TrainConfig);

/** Optimizer-specific settings the form applies when the optimizer changes (the guide's LR-free setup for Prodigy). */
export const OPTIMIZER_PRESETS: { readonly [K in OptimizerKind]: Partial<TrainConfig> } = {
  adamw: { unetLr: DEFAULT_CONFIG.unetLr, textEncoderLr: DEFAULT_CONFIG.textEncoderLr, maxGradNorm: DEFAULT_CONFIG.maxGradNorm },
  // The recipe gives no LRs for Lion and SGD: they start from AdamW's, to be tuned by hand.
  lion: { unetLr: DEFAULT_CONFIG.unetLr, textEncoderLr: DEFAULT_CONFIG.textEncoderLr, maxGradNorm: DEFAULT_CONFIG.maxGradNorm },
  prodigy: { unetLr: 1, textEncoderLr: 1, maxGradNorm: 0 },
  sgd: { unetLr: DEFAULT_CONFIG.unetLr, textEncoderLr: DEFAULT_CONFIG.textEncoderLr, maxGradNorm: DEFAULT_CONFIG.maxGradNorm },
};

// ---- validation ----

const got = (v: unknown) => (typeof v === 'number' ? String(v) : typeof v === 'string' ? JSON.stringify(v) : v === null ? 'null' : v === undefined ? 'nothing' : typeof v);

/** A number field whose messages name the field and its allowed range. */
export function num(label: string, min: number, max: number, o: { int?: boolean; multipleOf?: number } = {}) {
  const kind = o.int ? 'a whole number' : 'a number';
  const range = `between ${min} and ${max}`;
  const error = (iss: { input?: unknown }) => (iss.input === undefined || iss.input === '' || Number.isNaN(iss.input) ? `${label} is required: ${kind} ${range}` : `${label} must be ${kind} ${range} (got ${got(iss.input)})`);
  return z.number({ error }).superRefine((v, ctx) => {
    if (o.int && !Number.isInteger(v)) ctx.addIssue({ code: 'custom', message: `${label} must be a whole number ${range} (got ${v})` });
    else if (v < min || v > max) ctx.addIssue({ code: 'custom', message: `${label} must be ${range} (got ${v})` });
    else if (o.multipleOf && v % o.multipleOf !== 0) ctx.addIssue({ code: 'custom', message: `${label} must be a multiple of ${o.multipleOf} (got ${v})` });
  });
}
export const oneOf = <const T extends readonly [string, ...string[]]>(label: string, values: T) =>
  z.enum(values, { error: (iss) => `${label} must be one of ${values.join(', ')} (got ${got(iss.input)})` });
const flag = (label: string) => z.boolean({ error: (iss) => `${label} must be on or off (true or false; got ${got(iss.input)})` });

const schema = z.object({
  baseSteps: num('Base steps', 1, 1_000_000, { int: true }),
  maxEpochs: num('Epochs', 0, 100_000, { int: true }),
  divideStepsByBatch: flag('Divide steps by batch'),
  batchSize: num('Batch size', 1, 64, { int: true }),
  gradAccumulation: num('Gradient accumulation', 1, 256, { int: true }),
  unetLr: num('U-Net learning rate', 0, 10),
  textEncoderLr: num('Text-encoder learning rate', 0, 10),
  lrScaling: oneOf('LR scaling', CHOICES.lrScaling),
  scheduler: oneOf('LR schedule', SCHEDULERS),
  lrCycles: num('LR cycles', 1, 100, { int: true }),
  lrPower: num('LR power', 0.01, 10),
  warmup: num('Warmup', 0, 1_000_000),
  warmupUnit: oneOf('Warmup unit', CHOICES.warmupUnit),
  optimizer: oneOf('Optimizer', OPTIMIZERS),
  beta1: num('Beta 1', 0, 0.9999),
  beta2: num('Beta 2', 0, 0.99999),
  weightDecay: num('Weight decay', 0, 1),
  momentum: num('Momentum', 0, 0.999),
  maxGradNorm: num('Max grad norm', 0, 1000),
  networkType: oneOf('Network type', NETWORK_TYPES),
  networkDim: num('Network dim', 1, 1024, { int: true }),
  networkAlpha: num('Network alpha', 0.001, 1024),
  networkDropout: num('Network dropout', 0, 0.9),
  convDim: num('Conv dim', 0, 1024, { int: true }),
  convAlpha: num('Conv alpha', 0, 1024),
  trainTextEncoder: flag('Train the text encoder'),
  resolution: num('Resolution', 64, 2048, { int: true, multipleOf: 64 }),
  enableBuckets: flag('Aspect-ratio buckets'),
  bucketStep: num('Bucket step', 64, 512, { int: true, multipleOf: 64 }),
  minBucket: num('Minimum bucket side', 64, 4096, { int: true }),
  maxBucket: num('Maximum bucket side', 64, 4096, { int: true }),
  maxAspect: num('Maximum aspect ratio', 1, 4),
  flipAug: flag('Flip augmentation'),
  shuffleCaptions: flag('Shuffle captions'),
  keepTokens: num('Keep tokens', 0, 75, { int: true }),
  captionDropout: num('Caption dropout', 0, 1),
  tagDropout: num('Tag dropout', 0, 1),
  triggerWord: z.string({ error: 'The trigger word must be text' }).max(200, 'The trigger word must be at most 200 characters'),
  repeats: num('Repeats', 1, 1000, { int: true }),
  noiseOffset: num('Noise offset', 0, 1),
  minSnrGamma: num('Min-SNR gamma', 0, 100),
  prediction: oneOf('Prediction', CHOICES.prediction),
  zeroTerminalSnr: flag('Zero terminal SNR'),
  loss: oneOf('Loss', CHOICES.loss),
  huberDelta: num('Huber delta', 0.0001, 100),
  clipSkip: num('Clip skip', 1, 12, { int: true }),
  seed: num('Seed', 0, 4294967295, { int: true }),
  cacheTextEncoderOutputs: flag('Cache text-encoder outputs'),
  gradientCheckpointing: flag('Gradient checkpointing'),
  saveEvery: num('Save every', 0, 1_000_000, { int: true }),
  sampleEvery: num('Sample every', 0, 1_000_000, { int: true }),
  samplePrompt: z.string({ error: 'The sample prompt must be text' }).max(1000, 'The sample prompt must be at most 1000 characters'),
  sampleSteps: num('Sample steps', 0, 150, { int: true }),
  sampleGuidance: num('Sample guidance', 1, 30),
  savePrecision: oneOf('Save precision', CHOICES.savePrecision),
  runName: z
    .string({ error: 'The run name must be text' })
    .min(1, 'Give the run a name')
    .max(100, 'The run name must be at most 100 characters')
    .regex(/^[\w. -]+$/, 'The run name may use letters, digits, spaces, dots, dashes and underscores'),
  validation: oneOf('Validation', CHOICES.validation),
  validationSplit: num('Validation split', 0, 0.5),
  validateEvery: num('Validate every', 0, 1_000_000, { int: true }),
});

// The schema and the documented interface must describe the same object.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _schemaMatchesInterface: Same<z.infer<typeof schema>, TrainConfig> = true;

export type ValidationResult = { ok: true; config: TrainConfig } | { ok: false; errors: Record<string, string> };

/** Checks between fields, each reported on the field a person should change; `has(f)` says f already has its own error. */
function crossFieldErrors(c: TrainConfig, has: (f: keyof TrainConfig) => boolean): Partial<Record<keyof TrainConfig, string>> {
  const e: Partial<Record<keyof TrainConfig, string>> = {};
  const ok = (...f: (keyof TrainConfig)[]) => f.every((k) => !has(k) && !e[k]);
  if (ok('warmup', 'warmupUnit', 'scheduler')) {
    try {
      // Without a valid run length only the warmup's own rules can be judged.
      // A run given in epochs has its length only once the images are known (planRun checks it then).
      warmupSteps(c, ok('baseSteps', 'batchSize', 'gradAccumulation', 'divideStepsByBatch', 'maxEpochs') && !c.maxEpochs ? optimizerSteps(c) : Infinity);
    } catch (err) {
      if (!(err instanceof PlanError)) throw err;
      e.warmup = c.warmupUnit === 'fraction' && c.warmup >= 1 ? `${err.message}; set the unit to "steps" to give a number of steps` : err.message;
    }
  }
  if (ok('minBucket', 'maxBucket') && c.minBucket > c.maxBucket) e.minBucket = `The minimum bucket side (${c.minBucket}) is above the maximum (${c.maxBucket})`;
  for (const k of ['minBucket', 'maxBucket'] as const)
    if (ok(k, 'bucketStep') && c[k] % c.bucketStep !== 0) e[k] = `${k === 'minBucket' ? 'The minimum' : 'The maximum'} bucket side must be a multiple of the bucket step ${c.bucketStep} (got ${c[k]})`;
  if (ok('cacheTextEncoderOutputs', 'trainTextEncoder') && c.cacheTextEncoderOutputs && c.trainTextEncoder)
    e.cacheTextEncoderOutputs = 'Text-encoder outputs can be cached only when the text encoder is not trained: turn one of them off';
  if (ok('cacheTextEncoderOutputs', 'shuffleCaptions', 'captionDropout', 'tagDropout') && c.cacheTextEncoderOutputs && (c.shuffleCaptions || c.captionDropout > 0 || c.tagDropout > 0))
    e.cacheTextEncoderOutputs = 'Caching text-encoder outputs needs fixed captions: turn off caption shuffling, caption dropout and tag dropout';
  if (ok('convDim', 'convAlpha') && c.convDim > 0 && c.convAlpha === 0)
    e.convAlpha = `Conv alpha 0 scales the LoCon layers to nothing (their output is multiplied by conv alpha / conv dim): set it above 0, e.g. to the conv dim (${c.convDim}) as kohya does`;
  if (ok('networkDropout', 'networkType') && c.networkType !== 'lora' && c.networkDropout > 0)
    e.networkDropout = `Network dropout acts on LoRA's down projection, which ${c.networkType} does not have: set it to 0 for this network type`;
  if (ok('zeroTerminalSnr', 'prediction') && c.zeroTerminalSnr && c.prediction === 'epsilon')
    e.zeroTerminalSnr = 'Zero terminal SNR needs v-prediction (with epsilon the last timestep has nothing to learn)';
  const lrs = [['unetLr', true], ['textEncoderLr', c.trainTextEncoder === true]] as const;
  if (ok('optimizer') && c.optimizer === 'prodigy')
    for (const [k, used] of lrs)
      if (used && ok(k) && (c[k] < 0.1 || c[k] > 10)) e[k] = `Prodigy finds its own step size; its learning rate is a multiplier between 0.1 and 10, normally 1 (got ${c[k]})`;
  if (ok('scheduler') && c.scheduler === 'polynomial')
    for (const [k, used] of lrs)
      if (used && ok(k) && c[k] > 0 && c[k] <= 1e-7) e[k] = `The polynomial schedule decays to 1e-7, so the learning rate must be above that (got ${c[k]})`;
  return e;
}

/** Conv alpha follows the given conv dim when the input leaves it out (kohya's default). */
function derivedConvAlpha(input: Record<string, unknown>): Partial<TrainConfig> {
  return 'convAlpha' in input || typeof input.convDim !== 'number' ? {} : { convAlpha: input.convDim };
}

/** Bucket sides derived from the input's resolution, step and max aspect when it gives neither side. */
function derivedBucketSides(input: Record<string, unknown>): Partial<TrainConfig> {
  const pick = (k: keyof TrainConfig) => (typeof input[k] === 'number' && Number.isFinite(input[k]) && (input[k] as number) > 0 ? (input[k] as number) : (DEFAULT_CONFIG[k] as number));
  const { min, max } = bucketSideLimits(pick('resolution'), Math.max(1, pick('maxAspect')), pick('bucketStep'));
  return { ...('minBucket' in input ? {} : { minBucket: min }), ...('maxBucket' in input ? {} : { maxBucket: max }) };
}

/**
 * Validate settings (a partial object is merged over the defaults) into per-field errors a person
 * can act on, each naming the allowed range. Unknown keys are ignored. Bucket sides left out are
 * derived from resolution, maxAspect and bucketStep, as the recipe derives 320/768 at 512; a conv
 * alpha left out is the conv dim.
 */
export function validateConfig(input: unknown): ValidationResult {
  if (input !== undefined && (input === null || typeof input !== 'object' || Array.isArray(input))) return { ok: false, errors: { config: `Settings must be an object of named fields (got ${got(input)})` } };
  const given = (input ?? {}) as Record<string, unknown>;
  const merged = { ...DEFAULT_CONFIG, ...derivedBucketSides(given), ...derivedConvAlpha(given), ...given };
  const r = schema.safeParse(merged);
  const errors: Record<string, string> = {};
  if (!r.success) for (const issue of r.error.issues) errors[issue.path.map(String).join('.') || 'config'] ??= issue.message;
  // Cross-field checks see the merged values; a field with its own error is not judged again.
  Object.assign(errors, { ...crossFieldErrors(merged as TrainConfig, (f) => f in errors), ...errors });
  if (Object.keys(errors).length || !r.success) return { ok: false, errors };
  return { ok: true, config: r.data };
}
