// What a run will ask of the GPU, found by running its training steps on the meta device (shapes only, no data).
import { MetaBackend } from '../engine/backend.js';
import type { SubgroupSizes } from '../engine/subgroups.js';
import { noGrad } from '../engine/autograd.js';
import type { Optimizer } from '../engine/optim/optimizer.js';
import { DEFAULT_CACHE_LIMIT } from '../engine/pool.js';
import { empty, scope } from '../engine/tensor.js';
import { clipForward, clipWeightShapes, type ClipConfig } from '../model/clip.js';
import { Layers } from '../model/layers.js';
import { LoraNetwork } from '../model/lora.js';
import { metaWeights, type DeviceWeights } from '../model/pipeline.js';
import { unetWeightShapes, type UNetConfig } from '../model/unet.js';
import { vaeWeightShapes, type VaeConfig } from '../model/vae.js';
import type { TrainConfig } from './config.js';
import { latentFactor, latentMoments } from './data.js';
import { loraSpecs, networkOptions } from './network.js';
import { createOptimizer } from './optimizer.js';
import { stepSettings, trainStep, type MicroBatch, type PendingStep, type StepModel, type StepSettings } from './step.js';

export interface MemoryEstimate {
  /** Frozen U-Net, text-encoder and VAE weights (f16). */
  weightBytes: number;
  /** LoRA parameters, their gradients and the optimizer's state. */
  networkBytes: number;
  /**
   * The most bytes the device holds at once over latent caching and training steps: live buffers
   * plus the pool's free ones (cached, or waiting for the GPU to finish before they are destroyed).
   */
  peakBytes: number;
  /** The most bytes live (owned by tensors) at once, weights included. */
  peakLiveBytes: number;
  /** What the pool's free buffers add on top of the live peak: `peakBytes - peakLiveBytes`. */
  cacheBytes: number;
  /** The free-cache limit this forecast assumed; set the same on the GPU backend (`setCacheLimit`). */
  cacheLimit: number;
  /** The largest single buffer after size-class rounding: it must fit maxBufferSize and maxStorageBufferBindingSize. */
  largestBuffer: number;
  /** Floating-point operations of one optimizer step (all micro-batches and the update). */
  flopsPerStep: number;
}

export interface MemoryEstimateOptions {
  /** The GPU backend's free-cache limit (default: the backend's default). */
  cacheLimit?: number;
  /** The GPU's limit on one buffer (Backend.maxBindingBytes): the VAE splits what would pass it. */
  maxBindingBytes?: number;
}

/** The model configurations a forecast needs (no weights: the meta device holds shapes only). */
export interface Models {
  unet: UNetConfig;
  clip: ClipConfig;
  vae: VaeConfig;
}

/**
 * Estimate the GPU memory of a run with these settings on a model of these configs, by doing on the
 * meta device what the Trainer does on the GPU, in its order: the weights and the LoRA, the VAE
 * encoding an image at the training resolution (and its mirror), the text encoder when its outputs
 * are cached, then optimizer steps at the training resolution (buckets keep about the same area),
 * each encoded before the GPU has finished the one before, as `Trainer.run` does. The meta device's
 * pool is the GPU's, with the same cache limit, so held bytes (live + cached) follow a GPU run.
 */
export function estimateTrainingMemory(models: Models, c: TrainConfig, o: MemoryEstimateOptions = {}): MemoryEstimate {
  const cacheLimit = o.cacheLimit ?? DEFAULT_CACHE_LIMIT;
  const meta = new MetaBackend(cacheLimit);
  meta.maxBindingBytes = o.maxBindingBytes ?? Infinity;
  const run = new MetaRun(meta, models, c);
  meta.resetPeak();

  cacheLatents(meta, run.vae, models.vae, c);
  if (c.cacheTextEncoderOutputs && !c.trainTextEncoder) {
    noGrad(() => scope(() => clipForward(new Layers(run.model.clip.weights), models.clip, new Int32Array(models.clip.maxPositions), 1, c.clipSkip))).dispose();
    meta.complete();
  }
  // Step 1 allocates the optimizer's state; step 2 runs with it live, on the free buffers of step 1
  // that the GPU is still using; step 3 after step 1's losses were read: the trainer's steady state.
  const encode = (n: number) => ({ step: run.step(n), mark: meta.mark() });
  let prev = encode(1);
  meta.resetStats();
  let flopsPerStep = 0;
  for (let s = 2; s <= 3; s++) {
    const cur = encode(s);
    if (s === 2) flopsPerStep = meta.stats.flops;
    meta.complete(prev.mark);
    prev.step.dispose();
    prev = cur;
  }
  prev.step.dispose();

  const { lora } = run.model;
  const paramElems = lora.arenas.unet.numel + (lora.arenas.te?.numel ?? 0);
  const pool = meta.pool();
  const est: MemoryEstimate = {
    weightBytes: run.weightBytes,
    networkBytes: (2 + STATE_COPIES[c.optimizer]) * paramElems * 4,
    peakBytes: pool.peakHeldBytes,
    peakLiveBytes: pool.peakLiveBytes,
    cacheBytes: pool.peakHeldBytes - pool.peakLiveBytes,
    cacheLimit,
    largestBuffer: pool.largestBuffer,
    flopsPerStep,
  };
  run.dispose();
  return est;
}

/** f32 state tensors each optimizer keeps per LoRA parameter. */
const STATE_COPIES: Record<TrainConfig['optimizer'], number> = { adamw: 2, lion: 1, sgd: 1, prodigy: 4 };

/** The meta device reads no token ids: every caption is the same row of zeros (ids change values, never shapes). */
const shapeTokenizer = { encodeForModel: (_text: string, maxLength: number) => new Int32Array(maxLength) };

/** A run set up on the meta device as the Trainer sets it up: the frozen weights (shapes only), the LoRA and the optimizer. */
export class MetaRun {
  readonly model: StepModel;
  readonly settings: StepSettings;
  readonly optimizer: Optimizer;
  readonly vae: DeviceWeights;

  constructor(readonly meta: MetaBackend, readonly models: Models, readonly config: TrainConfig) {
    const unet = { config: models.unet, weights: metaWeights(meta, unetWeightShapes(models.unet)) };
    const clip = { config: models.clip, weights: metaWeights(meta, clipWeightShapes(models.clip)) };
    this.vae = metaWeights(meta, vaeWeightShapes(models.vae));
    const lora = new LoraNetwork(meta, loraSpecs({ unet, clip }, config), 0, undefined, networkOptions({ unet, clip }, config));
    // With cached text-encoder outputs, the one (empty) caption has one: the step uploads contexts instead of running the encoder.
    const cached = config.cacheTextEncoderOutputs && !config.trainTextEncoder;
    const contexts = cached ? new Map([['', new Float32Array(models.clip.maxPositions * models.clip.width)]]) : undefined;
    this.model = { unet, clip, tokenizer: shapeTokenizer, lora, contexts };
    this.settings = stepSettings(config);
    this.optimizer = createOptimizer(config);
  }

  /** Bytes of the frozen weights. */
  get weightBytes(): number {
    return this.model.unet.weights.bytes + this.model.clip.weights.bytes + this.vae.bytes;
  }

  /**
   * One optimizer step, `Trainer.optimizerStep`'s own code (`trainStep`), on micro-batches of
   * latent shape [batch, height, width] (default: the config's batch at its square resolution).
   */
  step(n: number, latent?: readonly [number, number, number]): PendingStep {
    const c = this.config;
    const f = latentFactor(this.models.vae);
    const [B, h, w] = latent ?? [c.batchSize, c.resolution / f, c.resolution / f];
    const size = B * this.models.unet.inChannels * h * w;
    const batch: MicroBatch = { latents: new Float32Array(size), noise: new Float32Array(size), timesteps: new Array<number>(B).fill(500), captions: new Array<string>(B).fill(''), height: h, width: w };
    const micro = Array.from({ length: c.gradAccumulation }, () => batch);
    return trainStep(this.model, this.settings, this.optimizer, micro, { step: n, lr: { unet: 1e-4, te: 1e-4 } });
  }

  dispose(): void {
    this.optimizer.dispose();
    this.model.lora.dispose();
    for (const w of [this.model.unet.weights, this.model.clip.weights, this.vae]) w.dispose();
  }
}

/** What the meta device should take from the GPU a forecast is for: the limits that choose kernels' fallbacks. */
export interface MetaDeviceLimits {
  /** The GPU's `Backend.maxStorageBuffers` (default: unlimited, every fused kernel). */
  maxStorageBuffers?: number;
  /** The GPU's subgroups and f16 reads (`GpuBackend.subgroups`, `nativeF16`): the kernel variants it picks (default: none). */
  subgroups?: SubgroupSizes | null;
  nativeF16?: boolean;
}

/** A meta device with these limits. */
function metaDevice(limits: MetaDeviceLimits): MetaBackend {
  const meta = new MetaBackend();
  meta.maxStorageBuffers = limits.maxStorageBuffers ?? Infinity;
  meta.subgroups = limits.subgroups ?? null;
  meta.nativeF16 = limits.nativeF16 ?? false;
  return meta;
}

/** Dispatches (in all and per kernel) and FLOPs of one optimizer step of these settings, counted on the meta device. */
export function metaStepCounts(models: Models, c: TrainConfig, latent?: readonly [number, number, number], limits: MetaDeviceLimits = {}): { dispatches: number; flops: number; byKernel: Map<string, number> } {
  const meta = metaDevice(limits);
  const run = new MetaRun(meta, models, c);
  meta.resetStats();
  run.step(1, latent).dispose();
  const byKernel = new Map([...meta.stats.byKernel].map(([k, v]) => [k, v.dispatches] as [string, number]).sort((a, b) => b[1] - a[1]));
  const out = { dispatches: meta.stats.dispatches, flops: meta.stats.flops, byKernel };
  run.dispose();
  return out;
}

/** One kernel source a run compiles: the pipeline cache's key, with the kernel's name for reports. */
export interface KernelSource {
  name: string;
  source: string;
}

/**
 * The WGSL sources the training steps of this run dispatch, in first-use order, found by running
 * one optimizer step per latent shape ([batch, height, width] in latent pixels) on the meta device
 * with the Trainer's step code: what a GPU backend can compile before the first step (pass its
 * `limits`: they choose the fallbacks it dispatches). The VAE encoding and previews are not included.
 */
export function stepSources(models: Models, c: TrainConfig, latents: readonly (readonly [number, number, number])[], limits: MetaDeviceLimits = {}): KernelSource[] {
  const meta = metaDevice(limits);
  const run = new MetaRun(meta, models, c);
  meta.recordSources = true;
  latents.forEach((latent, i) => {
    const s = run.step(i + 1, latent);
    meta.complete();
    s.dispose();
  });
  run.dispose();
  return [...meta.sources].map(([source, name]) => ({ name, source }));
}

/** As `Trainer.cacheLatents` for one image: encode it (and its mirror), read back, free. */
function cacheLatents(meta: MetaBackend, vaeW: DeviceWeights, vae: VaeConfig, c: TrainConfig): void {
  const r = c.resolution;
  for (let i = 0; i < (c.flipAug ? 2 : 1); i++) {
    const { mean, logvar } = latentMoments({ config: vae, weights: vaeW }, () => empty(meta, [1, 3, r, r]));
    meta.complete(); // the trainer reads both back before it goes on
    mean.dispose();
    logvar.dispose();
  }
}
