// The settings form's fields: every TrainConfig field a person can set, with its label and help, basics first.
import { CHOICES, NETWORK_TYPES, OPTIMIZER_PRESETS, OPTIMIZERS, SCHEDULERS, TINY_RESOLUTION, type OptimizerKind, type TrainConfig } from '../protocol/index.js';

export type Field = { key: keyof TrainConfig; label: string; help: string; kind: 'number' | 'text' | 'bool' | 'select'; options?: readonly string[]; step?: number };

/** The fields shown open: what most runs change. */
export const BASIC: Field[] = [
  { key: 'runName', label: 'Run name', help: 'Name of the downloaded file.', kind: 'text' },
  { key: 'triggerWord', label: 'Trigger word', help: 'Put in front of every caption; use it in prompts to call the LoRA.', kind: 'text' },
  { key: 'baseSteps', label: 'Base steps', help: 'Steps at batch 1; divided by the effective batch (2000 is a good start). Not used when epochs are set.', kind: 'number' },
  { key: 'maxEpochs', label: 'Epochs', help: 'Run length in epochs instead of steps (one epoch: every image × its repeats once); 0 uses base steps.', kind: 'number' },
  { key: 'batchSize', label: 'Batch size', help: 'Images per pass; more needs more GPU memory.', kind: 'number' },
  { key: 'gradAccumulation', label: 'Gradient accumulation', help: 'Passes averaged per update: a bigger batch without the memory.', kind: 'number' },
  { key: 'unetLr', label: 'U-Net learning rate', help: 'At batch 1; scaled with the batch as set below (1e-4; 1 for Prodigy).', kind: 'number', step: 1e-5 },
  { key: 'textEncoderLr', label: 'Text-encoder learning rate', help: 'At batch 1 (5e-5; 1 for Prodigy).', kind: 'number', step: 1e-5 },
  { key: 'networkType', label: 'Network type', help: 'lora (kohya LoRA; LoCon with a conv dim), or the LyCORIS types loha, lokr and dora, which A1111/Forge and ComfyUI load too (lora).', kind: 'select', options: NETWORK_TYPES },
  { key: 'networkDim', label: 'Network dim (rank)', help: 'Capacity of the LoRA (16).', kind: 'number' },
  { key: 'networkAlpha', label: 'Network alpha', help: 'Output scale is alpha / dim (16).', kind: 'number' },
  { key: 'resolution', label: 'Resolution', help: `Training size in pixels (512 for SD 1.5; ${TINY_RESOLUTION} for the tiny demo).`, kind: 'number', step: 64 },
];

/** The fields folded under "Advanced": every other setting the config has. */
export const ADVANCED: Field[] = [
  { key: 'optimizer', label: 'Optimizer', help: "AdamW (default), Lion (LR about a third of AdamW's), SGD with momentum, or Prodigy (finds its own step size). Choosing one sets its learning rates and clipping.", kind: 'select', options: OPTIMIZERS },
  { key: 'beta1', label: 'Beta 1', help: 'First-moment decay of AdamW, Lion and Prodigy (0.9).', kind: 'number', step: 0.01 },
  { key: 'beta2', label: 'Beta 2', help: 'Second-moment decay of AdamW, Lion and Prodigy (0.99).', kind: 'number', step: 0.001 },
  { key: 'momentum', label: 'Momentum', help: 'SGD momentum (0.9).', kind: 'number', step: 0.01 },
  { key: 'weightDecay', label: 'Weight decay', help: 'Decoupled decay (0.01).', kind: 'number', step: 0.001 },
  { key: 'maxGradNorm', label: 'Max grad norm', help: 'Gradient clipping (1; 0 disables).', kind: 'number', step: 0.1 },
  { key: 'lrScaling', label: 'LR scaling with batch', help: 'none, linear (×batch) or sqrt (×√batch).', kind: 'select', options: CHOICES.lrScaling },
  { key: 'divideStepsByBatch', label: 'Divide steps by batch', help: 'Keep the number of images seen constant.', kind: 'bool' },
  { key: 'scheduler', label: 'LR schedule', help: 'Shape of the learning rate over the run.', kind: 'select', options: SCHEDULERS },
  { key: 'lrCycles', label: 'LR cycles', help: 'Hard restarts of cosine_with_restarts (1).', kind: 'number' },
  { key: 'lrPower', label: 'LR power', help: 'Exponent of the polynomial decay (1 = a straight line).', kind: 'number', step: 0.1 },
  { key: 'warmup', label: 'Warmup', help: 'Fraction of the steps (below 1) or steps, per the unit.', kind: 'number', step: 0.01 },
  { key: 'warmupUnit', label: 'Warmup unit', help: 'fraction or steps.', kind: 'select', options: CHOICES.warmupUnit },
  { key: 'trainTextEncoder', label: 'Train the text encoder', help: 'Off trains only the U-Net.', kind: 'bool' },
  { key: 'networkDropout', label: 'Network dropout', help: 'On the LoRA down-projection (0.1).', kind: 'number', step: 0.01 },
  { key: 'convDim', label: 'Conv dim (LoCon)', help: 'Rank for the 3x3 convolutions of ResBlocks and samplers; 0 leaves them alone.', kind: 'number' },
  { key: 'convAlpha', label: 'Conv alpha', help: 'LoCon output scale is conv alpha / conv dim; follows the conv dim unless you set it.', kind: 'number' },
  { key: 'noiseOffset', label: 'Noise offset', help: 'Helps very dark or bright images (0.01).', kind: 'number', step: 0.01 },
  { key: 'minSnrGamma', label: 'Min-SNR gamma', help: 'Loss weighting (5; 0 off).', kind: 'number' },
  { key: 'loss', label: 'Loss', help: 'l2 (squared error) or huber (pseudo-Huber, less pulled by outliers).', kind: 'select', options: CHOICES.loss },
  { key: 'huberDelta', label: 'Huber delta', help: 'Where pseudo-Huber turns from quadratic to linear (0.1).', kind: 'number', step: 0.01 },
  { key: 'prediction', label: 'Prediction', help: 'epsilon for SD 1.x.', kind: 'select', options: CHOICES.prediction },
  { key: 'zeroTerminalSnr', label: 'Zero terminal SNR', help: 'Rescale the noise schedule so the last step is pure noise; needs v-prediction.', kind: 'bool' },
  { key: 'clipSkip', label: 'Clip skip', help: '1 for most models, 2 for anime models.', kind: 'number' },
  { key: 'enableBuckets', label: 'Aspect-ratio buckets', help: 'Keep image shapes instead of square crops.', kind: 'bool' },
  { key: 'bucketStep', label: 'Bucket step', help: 'Bucket sides are multiples of this (64).', kind: 'number', step: 64 },
  { key: 'minBucket', label: 'Minimum bucket side', help: 'Smallest bucket side in pixels (set with the resolution).', kind: 'number', step: 64 },
  { key: 'maxBucket', label: 'Maximum bucket side', help: 'Largest bucket side in pixels (set with the resolution).', kind: 'number', step: 64 },
  { key: 'maxAspect', label: 'Maximum aspect ratio', help: 'Long side / short side of the widest bucket (2).', kind: 'number', step: 0.1 },
  { key: 'flipAug', label: 'Flip augmentation', help: 'Random horizontal mirroring.', kind: 'bool' },
  { key: 'shuffleCaptions', label: 'Shuffle caption tags', help: 'After the kept ones.', kind: 'bool' },
  { key: 'keepTokens', label: 'Keep tokens', help: 'Leading tags kept in place.', kind: 'number' },
  { key: 'captionDropout', label: 'Caption dropout', help: 'Chance of training a sample with an empty caption (0).', kind: 'number', step: 0.01 },
  { key: 'tagDropout', label: 'Tag dropout', help: 'Chance of dropping each tag after the kept ones (0).', kind: 'number', step: 0.01 },
  { key: 'repeats', label: 'Repeats', help: 'Times each image appears per epoch; images in a kohya N_concept folder (10_cat) are drawn N times instead.', kind: 'number' },
  { key: 'cacheTextEncoderOutputs', label: 'Cache text-encoder outputs', help: 'Encode each caption once (frozen text encoder, no shuffling or dropout).', kind: 'bool' },
  { key: 'gradientCheckpointing', label: 'Gradient checkpointing', help: 'Less memory, about a third slower.', kind: 'bool' },
  { key: 'seed', label: 'Seed', help: 'Same seed, same run.', kind: 'number' },
  { key: 'saveEvery', label: 'Save every', help: 'Steps between saved LoRAs (0 = every tenth of the run).', kind: 'number' },
  { key: 'sampleEvery', label: 'Sample every', help: 'Steps between preview images (0 = every tenth of the run).', kind: 'number' },
  { key: 'sampleSteps', label: 'Sample steps', help: 'Denoising steps per preview image (0 = no previews; 20 is typical).', kind: 'number' },
  { key: 'samplePrompt', label: 'Sample prompt', help: 'Prompt of the previews; empty uses the trigger word and the first caption.', kind: 'text' },
  { key: 'sampleGuidance', label: 'Sample guidance', help: 'Classifier-free guidance scale of the previews (7.5).', kind: 'number', step: 0.5 },
  { key: 'savePrecision', label: 'Save precision', help: 'fp16 files are half the size.', kind: 'select', options: CHOICES.savePrecision },
  { key: 'validation', label: 'Validation', help: 'off; holdout (images ticked "validation" in the dataset, plus the split below, are kept out of training); training (fixed noise on up to 16 training images, kohya style). The loss uses fixed noise and timesteps, so steps compare.', kind: 'select', options: CHOICES.validation },
  { key: 'validationSplit', label: 'Validation split', help: 'Holdout: fraction of the other images held out, chosen by the seed (0.1; at least one image when above 0).', kind: 'number', step: 0.05 },
  { key: 'validateEvery', label: 'Validate every', help: 'Steps between validation losses (0 = every tenth of the run); each new best is saved too.', kind: 'number' },
];

/** Config fields deliberately not on the form, and why (none now: every setting can be changed on the page). */
export const NOT_ON_FORM: Partial<Record<keyof TrainConfig, string>> = {};

/**
 * What a change on the form also changes: choosing an optimizer applies its preset (Prodigy's LR
 * multipliers of 1 and no clipping), and a conv alpha that followed the conv dim keeps following it.
 * Returns the patch and, for a preset, a line saying what was set.
 */
export function withLinkedFields(config: TrainConfig, p: Partial<TrainConfig>): { patch: Partial<TrainConfig>; note?: { key: keyof TrainConfig; text: string } } {
  if (p.optimizer && p.optimizer !== config.optimizer) {
    const preset = OPTIMIZER_PRESETS[p.optimizer as OptimizerKind];
    const said = Object.entries(preset).map(([k, v]) => `${labelOf(k as keyof TrainConfig)} ${v}`).join(', ');
    return { patch: { ...p, ...preset }, note: { key: 'optimizer', text: `Set for ${p.optimizer}: ${said}.` } };
  }
  if (p.networkType && p.networkType !== 'lora' && config.networkDropout > 0 && !('networkDropout' in p))
    return { patch: { ...p, networkDropout: 0 }, note: { key: 'networkType', text: `Set for ${p.networkType}: network dropout 0 (it acts on LoRA's down projection only).` } };
  if (p.convDim !== undefined && !('convAlpha' in p) && (config.convAlpha === config.convDim || config.convAlpha === 0 || !Number.isFinite(config.convDim)) && Number.isFinite(p.convDim)) return { patch: { ...p, convAlpha: p.convDim } };
  return { patch: p };
}

function labelOf(k: keyof TrainConfig): string {
  return [...BASIC, ...ADVANCED].find((f) => f.key === k)?.label ?? k;
}

/** "1 epoch", "2 epochs". */
export function plural(n: number, word: string): string {
  return `${n} ${n === 1 ? word : `${word}s`}`;
}
