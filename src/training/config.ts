// The one training configuration: every field documented, defaults in one place (the reference recipe), validated once.
import { z } from 'zod';

export const SCHEDULERS = ['constant', 'constant_with_warmup', 'linear', 'cosine', 'cosine_with_restarts', 'polynomial'] as const;
export const OPTIMIZERS = ['adamw', 'lion', 'sgd'] as const;

const num = (min: number, max: number, what: string) =>
  z.number({ error: `${what} must be a number` }).refine(Number.isFinite, `${what} must be a finite number`).refine((v) => v >= min && v <= max, `${what} must be between ${min} and ${max}`);
const int = (min: number, max: number, what: string) => num(min, max, what).refine(Number.isInteger, `${what} must be a whole number`);

/** Field-by-field schema; the doc comment of each TrainConfig field is its help text in the form. */
const schema = z.object({
  /** Optimizer steps at batch 1, divided by the effective batch when `divideStepsByBatch` is on (recipe: 2000). */
  baseSteps: int(1, 1_000_000, 'Base steps'),
  /** Divide the base steps by the effective batch size, as the recipe does. */
  divideStepsByBatch: z.boolean(),
  /** Images per micro-batch (more uses more GPU memory). */
  batchSize: int(1, 64, 'Batch size'),
  /** Micro-batches whose gradients are averaged into one update (more time, almost no memory). */
  gradAccumulation: int(1, 256, 'Gradient accumulation'),
  /** U-Net learning rate at batch 1 (recipe: 1e-4). */
  unetLr: num(0, 10, 'U-Net learning rate'),
  /** Text-encoder learning rate at batch 1 (recipe: 5e-5). */
  textEncoderLr: num(0, 10, 'Text-encoder learning rate'),
  /** How learning rates grow with the effective batch: none, linear (×batch) or sqrt (×√batch). */
  lrScaling: z.enum(['none', 'linear', 'sqrt']),
  /** Learning-rate schedule after warmup. */
  scheduler: z.enum(SCHEDULERS),
  /** Restarts of cosine_with_restarts. */
  lrCycles: int(1, 100, 'LR cycles'),
  /** Power of the polynomial schedule. */
  lrPower: num(0.01, 10, 'LR power'),
  /** Warmup length: a fraction of the steps (0 ≤ w < 1) or a number of steps, per `warmupUnit`. */
  warmup: num(0, 1_000_000, 'Warmup'),
  warmupUnit: z.enum(['fraction', 'steps']),
  /** Optimizer (recipe: AdamW). */
  optimizer: z.enum(OPTIMIZERS),
  /** Adam/Lion betas. */
  beta1: num(0, 0.9999, 'Beta 1'),
  beta2: num(0, 0.99999, 'Beta 2'),
  /** Decoupled weight decay (recipe: 0.01). */
  weightDecay: num(0, 1, 'Weight decay'),
  /** SGD momentum. */
  momentum: num(0, 0.999, 'Momentum'),
  /** LoRA rank (recipe: 16). */
  networkDim: int(1, 1024, 'Network dim'),
  /** LoRA alpha; the output is scaled by alpha / dim (recipe: 16). */
  networkAlpha: num(0.001, 1024, 'Network alpha'),
  /** Dropout on the LoRA down-projection output, training only (recipe: 0.1). */
  networkDropout: num(0, 0.9, 'Network dropout'),
  /** LoCon rank for 3x3 convolutions; 0 turns conv LoRA off. */
  convDim: int(0, 1024, 'Conv dim'),
  convAlpha: num(0, 1024, 'Conv alpha'),
  /** Train the text encoder LoRA too (off = U-Net only). */
  trainTextEncoder: z.boolean(),
  /** Training resolution (square side; buckets keep the area). */
  resolution: int(64, 2048, 'Resolution').refine((v) => v % 64 === 0, 'Resolution must be a multiple of 64'),
  /** Aspect-ratio buckets instead of square crops. */
  enableBuckets: z.boolean(),
  minBucket: int(64, 4096, 'Minimum bucket side'),
  maxBucket: int(64, 4096, 'Maximum bucket side'),
  maxAspect: num(1, 4, 'Maximum aspect ratio'),
  /** Random horizontal flips. */
  flipAug: z.boolean(),
  /** Shuffle caption tags each time (after the kept ones). */
  shuffleCaptions: z.boolean(),
  /** Leading tags never shuffled or dropped. */
  keepTokens: int(0, 75, 'Keep tokens'),
  /** Probability of training an image with an empty caption. */
  captionDropout: num(0, 1, 'Caption dropout'),
  /** Probability of dropping each tag. */
  tagDropout: num(0, 1, 'Tag dropout'),
  /** Word put at the front of every caption (the LoRA's trigger). */
  triggerWord: z.string().max(200),
  /** Times each image appears per epoch. */
  repeats: int(1, 1000, 'Repeats'),
  /** noise += offset · N(0,1) per channel (recipe: 0.01). */
  noiseOffset: num(0, 1, 'Noise offset'),
  /** Min-SNR-γ loss weighting; 0 turns it off (recipe: 5). */
  minSnrGamma: num(0, 100, 'Min-SNR gamma'),
  /** What the U-Net predicts: the noise (SD 1.x) or v. */
  prediction: z.enum(['epsilon', 'v_prediction']),
  /** Rescale the schedule to zero terminal SNR (use with v-prediction). */
  zeroTerminalSnr: z.boolean(),
  /** Loss: L2 or pseudo-Huber. */
  loss: z.enum(['l2', 'huber']),
  huberDelta: num(0.0001, 100, 'Huber delta'),
  /** Use the text encoder's hidden state n−1 layers before the last (A1111 convention). */
  clipSkip: int(1, 12, 'Clip skip'),
  /** Seed of every random choice (noise, timesteps, order, augmentation). */
  seed: int(0, 2 ** 31 - 1, 'Seed'),
  /** Clip the global gradient norm to this; 0 disables. */
  maxGradNorm: num(0, 1000, 'Max grad norm'),
  /** Encode each image with the VAE once and reuse the latents. */
  cacheLatents: z.boolean(),
  /** Encode captions once (only when the text encoder is frozen and captions never change). */
  cacheTextEncoderOutputs: z.boolean(),
  /** Recompute activations in backward to save memory. */
  gradientCheckpointing: z.boolean(),
  /** Save the LoRA every N steps; 0 = every tenth of the run. */
  saveEvery: int(0, 1_000_000, 'Save every'),
  /** Precision of the saved weights. */
  savePrecision: z.enum(['fp16', 'fp32']),
  /** Name of the run (and of the downloaded file). */
  runName: z.string().min(1, 'Give the run a name').max(100).regex(/^[\w. -]+$/, 'Use letters, digits, spaces, dots, dashes and underscores'),
});

export type TrainConfig = z.infer<typeof schema>;

/** The reference recipe's defaults (../shared/reference/training-recipe.md). */
export const DEFAULT_CONFIG: TrainConfig = {
  baseSteps: 2000,
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
  networkDim: 16,
  networkAlpha: 16,
  networkDropout: 0.1,
  convDim: 0,
  convAlpha: 0,
  trainTextEncoder: true,
  resolution: 512,
  enableBuckets: true,
  minBucket: 320,
  maxBucket: 768,
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
  huberDelta: 1,
  clipSkip: 1,
  seed: 0,
  maxGradNorm: 1,
  cacheLatents: true,
  cacheTextEncoderOutputs: false,
  gradientCheckpointing: true,
  saveEvery: 0,
  savePrecision: 'fp16',
  runName: 'my-lora',
};

export type ValidationResult = { ok: true; config: TrainConfig } | { ok: false; errors: Record<string, string> };

/** Validate (partial input merged over the defaults) into per-field errors a person can act on. */
export function validateConfig(input: unknown): ValidationResult {
  const merged = { ...DEFAULT_CONFIG, ...(input && typeof input === 'object' ? input : {}) };
  const r = schema.safeParse(merged);
  const errors: Record<string, string> = {};
  if (!r.success) for (const issue of r.error.issues) errors[String(issue.path[0] ?? 'config')] ??= issue.message;
  const c = merged as TrainConfig;
  if (!errors.warmup && c.warmupUnit === 'fraction' && c.warmup >= 1) errors.warmup = 'A warmup fraction must be below 1 (use "steps" to give a number of steps)';
  if (!errors.warmup && c.warmupUnit === 'steps' && !Number.isInteger(c.warmup)) errors.warmup = 'Warmup steps must be a whole number';
  if (!errors.maxBucket && !errors.minBucket && c.minBucket > c.maxBucket) errors.minBucket = 'The minimum bucket side is above the maximum';
  if (c.cacheTextEncoderOutputs && c.trainTextEncoder) errors.cacheTextEncoderOutputs = 'Text-encoder outputs can be cached only when the text encoder is not trained';
  if (c.cacheTextEncoderOutputs && (c.shuffleCaptions || c.captionDropout > 0 || c.tagDropout > 0)) errors.cacheTextEncoderOutputs ??= 'Caching text-encoder outputs needs fixed captions: turn off shuffling and dropout';
  if (Object.keys(errors).length) return { ok: false, errors };
  return { ok: true, config: r.data! };
}
