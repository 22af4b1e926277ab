// The ss_* and modelspec.* metadata kohya writes, from our config and run plan.
import type { TrainConfig } from './config.js';
import type { RunPlan } from './arithmetic.js';
import { tagFrequency } from './captions.js';
import { folderKey, folderSummary } from './dataset-files.js';
import type { ValidationSummary } from './validation.js';

export interface RunFacts {
  config: TrainConfig;
  plan: RunPlan;
  numImages: number;
  step: number;
  epoch: number;
  modelName: string;
  sessionId: string;
  startedAt: number;
  /** The run's images by path (folder names carry kohya's repeats), with their own repeats and raw captions. */
  images: readonly { name: string; caption: string; repeats?: number }[];
  bucketInfo: unknown;
  /**
   * The ranks and alphas the saved modules have, where they differ from the settings' (a continued
   * file keeps its own); absent: the settings'.
   */
  network?: { dim: number; alpha: number; convDim: number; convAlpha: number };
  /** The run's validation so far (absent: validation off). */
  validation?: ValidationSummary;
}

/** The optimizer as kohya records it: the class path of the PyTorch implementation with the same maths. */
const OPTIMIZER_CLASS: Record<TrainConfig['optimizer'], string> = {
  adamw: 'torch.optim.adamw.AdamW',
  lion: 'lion_pytorch.lion_pytorch.Lion',
  sgd: 'torch.optim.sgd.SGD',
  prodigy: 'prodigyopt.prodigy.Prodigy',
};

/** kohya's ss_dataset_dirs: per folder (its own name) the repeats and image count. */
function datasetDirs(f: RunFacts): Record<string, { n_repeats: number; img_count: number }> {
  const dirs: Record<string, { n_repeats: number; img_count: number }> = {};
  for (const d of folderSummary(f.images, f.config.repeats)) dirs[d.name] = { n_repeats: d.repeats, img_count: (dirs[d.name]?.img_count ?? 0) + d.images };
  return dirs;
}

/** kohya's ss_tag_frequency: tag counts nested per folder (its own name). */
function tagsByFolder(f: RunFacts): Record<string, Record<string, number>> {
  const by = new Map<string, string[]>();
  for (const i of f.images) by.set(folderKey(i.name), [...(by.get(folderKey(i.name)) ?? []), i.caption]);
  return Object.fromEntries([...by].map(([k, caps]) => [k, tagFrequency(caps)]));
}

/**
 * The run's validation in the file (our own keys; kohya has none for the losses): the setup, every loss
 * so far as JSON [[step, loss], ...], the best step and its loss, and the loss at this file's step.
 */
function validationMetadata(v: ValidationSummary, step: number): Record<string, string> {
  const here = v.history.find(([s]) => s === step);
  return {
    lorasmith_validation: JSON.stringify({ mode: v.mode, split: v.mode === 'holdout' ? v.split : undefined, every: v.every, images: v.images, timesteps: v.timesteps }),
    lorasmith_validation_losses: JSON.stringify(v.history),
    ...(v.best ? { lorasmith_validation_best_step: String(v.best.step), lorasmith_validation_best_loss: String(v.best.loss) } : {}),
    ...(here ? { lorasmith_validation_loss: String(here[1]) } : {}),
  };
}

/** Stability's modelspec keys, which A1111 and ComfyUI show for a LoRA. */
function modelspecMetadata(f: RunFacts): Record<string, string> {
  const c = f.config;
  const res = `${c.resolution}x${c.resolution}`;
  return {
    'modelspec.sai_model_spec': '1.0.0',
    'modelspec.architecture': 'stable-diffusion-v1/lora',
    'modelspec.implementation': 'https://github.com/Stability-AI/generative-models',
    'modelspec.title': c.runName,
    'modelspec.date': new Date(f.startedAt).toISOString(),
    'modelspec.resolution': res,
    'modelspec.prediction_type': c.prediction === 'epsilon' ? 'epsilon' : 'v',
    'modelspec.trigger_phrase': c.triggerWord,
  };
}

/** The safetensors metadata of a LoRA file from this run; all values are strings, as safetensors metadata requires. */
export function loraMetadata(f: RunFacts): Record<string, string> {
  const c = f.config;
  const s = (v: unknown) => String(v);
  const net = f.network ?? { dim: c.networkDim, alpha: c.networkAlpha, convDim: c.convDim, convAlpha: c.convAlpha };
  return {
    ss_network_module: 'networks.lora',
    ss_network_dim: s(net.dim),
    ss_network_alpha: s(net.alpha),
    ss_network_args: JSON.stringify(net.convDim > 0 ? { conv_dim: net.convDim, conv_alpha: net.convAlpha, dropout: c.networkDropout } : { dropout: c.networkDropout }),
    ss_network_dropout: s(c.networkDropout),
    ss_base_model_version: 'sd_v1',
    ss_v2: 'False',
    ss_learning_rate: s(f.plan.unetLr),
    ss_unet_lr: s(f.plan.unetLr),
    ss_text_encoder_lr: s(c.trainTextEncoder ? f.plan.textEncoderLr : 0),
    ss_lr_scheduler: c.scheduler,
    ss_lr_warmup_steps: s(f.plan.warmupSteps),
    ss_optimizer: OPTIMIZER_CLASS[c.optimizer],
    ss_max_train_steps: s(f.plan.steps),
    ss_steps: s(f.step),
    ss_epoch: s(f.epoch),
    ss_num_epochs: s(f.plan.epochs),
    ss_num_train_images: s(f.plan.imagesPerEpoch),
    ss_batch_size_per_device: s(c.batchSize),
    ss_total_batch_size: s(f.plan.effectiveBatch),
    ss_gradient_accumulation_steps: s(c.gradAccumulation),
    ss_resolution: `(${c.resolution}, ${c.resolution})`,
    ss_enable_bucket: c.enableBuckets ? 'True' : 'False',
    ss_min_bucket_reso: s(c.minBucket),
    ss_max_bucket_reso: s(c.maxBucket),
    ss_bucket_info: JSON.stringify(f.bucketInfo),
    ss_clip_skip: s(c.clipSkip),
    ss_noise_offset: s(c.noiseOffset),
    ss_min_snr_gamma: s(c.minSnrGamma),
    ss_seed: s(c.seed),
    ss_shuffle_caption: c.shuffleCaptions ? 'True' : 'False',
    ss_keep_tokens: s(c.keepTokens),
    ss_flip_aug: c.flipAug ? 'True' : 'False',
    ss_caption_dropout_rate: s(c.captionDropout),
    ss_max_grad_norm: s(c.maxGradNorm),
    ss_mixed_precision: 'no',
    ss_sd_model_name: f.modelName,
    ss_output_name: c.runName,
    ss_tag_frequency: JSON.stringify(tagsByFolder(f)),
    ss_dataset_dirs: JSON.stringify(datasetDirs(f)),
    ss_training_started_at: s(f.startedAt / 1000),
    ss_training_finished_at: s(Date.now() / 1000),
    ss_session_id: f.sessionId,
    ss_training_comment: 'trained in the browser with LoRASmith',
    ...modelspecMetadata(f),
    ...(f.validation ? validationMetadata(f.validation, f.step) : {}),
  };
}
