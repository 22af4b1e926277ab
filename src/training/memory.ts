// What a run will ask of the GPU, found by running its training steps on the meta device (shapes only, no data).
import { MetaBackend } from '../engine/backend.js';
import { noGrad } from '../engine/autograd.js';
import { backward } from '../engine/grad.js';
import { huberLoss, mseLoss, scale } from '../engine/index.js';
import { globalGradNorm } from '../engine/optim/adamw.js';
import { DEFAULT_CACHE_LIMIT } from '../engine/pool.js';
import { empty, keep, scope, tensor, type Tensor } from '../engine/tensor.js';
import { clipForward, clipWeightShapes, type ClipConfig } from '../model/clip.js';
import { Layers } from '../model/layers.js';
import { LoraNetwork, loraTargets } from '../model/lora.js';
import { metaWeights, type DeviceWeights } from '../model/pipeline.js';
import { unetForward, unetWeightShapes, type UNetConfig } from '../model/unet.js';
import { vaeEncode, vaeWeightShapes, type VaeConfig } from '../model/vae.js';
import type { TrainConfig } from './config.js';
import { createOptimizer } from './optimizer.js';
import type { Optimizer } from '../engine/optim/optimizer.js';

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

interface Models {
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
  const { run, vaeW, weightBytes } = setUp(meta, models, c);
  const { unetW, clipW, lora } = run;
  meta.resetPeak();

  cacheLatents(meta, vaeW, models.vae, c);
  if (c.cacheTextEncoderOutputs && !c.trainTextEncoder) {
    noGrad(() => scope(() => clipForward(new Layers(clipW), models.clip, new Int32Array(models.clip.maxPositions), 1, c.clipSkip))).dispose();
    meta.complete();
  }
  // Step 1 allocates the optimizer's state; step 2 runs with it live, on the free buffers of step 1
  // that the GPU is still using; step 3 after step 1's losses were read: the trainer's steady state.
  let prev = optimizerStep(run, 1);
  meta.resetStats();
  let flopsPerStep = 0;
  for (let s = 2; s <= 3; s++) {
    const cur = optimizerStep(run, s);
    if (s === 2) flopsPerStep = meta.stats.flops;
    meta.complete(prev.mark);
    prev.dispose();
    prev = cur;
  }
  prev.dispose();

  const arenas = [lora.arenas.unet, ...(lora.arenas.te ? [lora.arenas.te] : [])];
  const paramElems = arenas.reduce((a, x) => a + x.numel, 0);
  const pool = meta.pool();
  const est: MemoryEstimate = {
    weightBytes,
    networkBytes: (2 + STATE_COPIES[c.optimizer]) * paramElems * 4,
    peakBytes: pool.peakHeldBytes,
    peakLiveBytes: pool.peakLiveBytes,
    cacheBytes: pool.peakHeldBytes - pool.peakLiveBytes,
    cacheLimit,
    largestBuffer: pool.largestBuffer,
    flopsPerStep,
  };
  run.optimizer.dispose();
  lora.dispose();
  unetW.dispose();
  clipW.dispose();
  vaeW.dispose();
  return est;
}

/** f32 state tensors each optimizer keeps per LoRA parameter. */
const STATE_COPIES: Record<TrainConfig['optimizer'], number> = { adamw: 2, lion: 1, sgd: 1, prodigy: 4 };

interface Run {
  meta: MetaBackend;
  models: Models;
  c: TrainConfig;
  unetW: DeviceWeights;
  clipW: DeviceWeights;
  lora: LoraNetwork;
  optimizer: Optimizer;
  /** The micro-batches' latent shape: [batch, height, width] (default: the config's batch at its square resolution). */
  latent?: readonly [number, number, number];
}

/** As the Trainer's constructor: the frozen weights (shapes only), the LoRA and the optimizer. */
function setUp(meta: MetaBackend, models: Models, c: TrainConfig): { run: Run; vaeW: DeviceWeights; weightBytes: number } {
  const unetW = metaWeights(meta, unetWeightShapes(models.unet));
  const clipW = metaWeights(meta, clipWeightShapes(models.clip));
  const vaeW = metaWeights(meta, vaeWeightShapes(models.vae));
  const weightBytes = unetW.bytes + clipW.bytes + vaeW.bytes;
  const specs = loraTargets(models.unet, c.trainTextEncoder ? models.clip : null, { rank: c.networkDim, alpha: c.networkAlpha, convRank: c.convDim, convAlpha: c.convAlpha, textEncoder: c.trainTextEncoder });
  const lora = new LoraNetwork(meta, specs, 0, undefined, { dropout: c.networkDropout });
  return { run: { meta, models, c, unetW, clipW, lora, optimizer: createOptimizer(c) }, vaeW, weightBytes };
}

/** One kernel source a run compiles: the pipeline cache's key, with the kernel's name for reports. */
export interface KernelSource {
  name: string;
  source: string;
}

/**
 * The WGSL sources the training steps of this run dispatch, in first-use order, found by running
 * one optimizer step per latent shape ([batch, height, width] in latent pixels) on the meta device
 * as `Trainer.optimizerStep` does: what a GPU backend can compile before the first step.
 * The VAE encoding and previews are not included.
 */
export function stepSources(models: Models, c: TrainConfig, latents: readonly (readonly [number, number, number])[]): KernelSource[] {
  const meta = new MetaBackend();
  const { run, vaeW } = setUp(meta, models, c);
  meta.recordSources = true;
  latents.forEach((latent, i) => {
    run.latent = latent;
    const s = optimizerStep(run, i + 1);
    meta.complete();
    s.dispose();
  });
  run.optimizer.dispose();
  run.lora.dispose();
  for (const w of [run.unetW, run.clipW, vaeW]) w.dispose();
  return [...meta.sources].map(([source, name]) => ({ name, source }));
}

/** As `Trainer.cacheLatents` for one image: encode it (and its mirror), read back, free. */
function cacheLatents(meta: MetaBackend, vaeW: DeviceWeights, vae: VaeConfig, c: TrainConfig): void {
  const r = c.resolution;
  for (let i = 0; i < (c.flipAug ? 2 : 1); i++) {
    const { mean, logvar } = noGrad(() => scope(() => vaeEncode(new Layers(vaeW), vae, empty(meta, [1, 3, r, r]))));
    meta.complete(); // the trainer reads both back before it goes on
    mean.dispose();
    logvar.dispose();
  }
}

/**
 * As `Trainer.optimizerStep`: zero the gradients, the micro-steps, the global norm and the update.
 * Returns the mark at which the trainer reads the losses back, and what it frees once they are read.
 */
function optimizerStep(r: Run, step: number): { mark: number; dispose(): void } {
  const { lora, c, meta } = r;
  const arenas = [lora.arenas.unet, ...(lora.arenas.te ? [lora.arenas.te] : [])];
  for (const a of arenas) a.zeroGrad();
  const losses = Array.from({ length: c.gradAccumulation }, () => keep(microStep(r, c.gradAccumulation)));
  const norm = globalGradNorm(arenas);
  const flag = tensor(meta, [0], [1]);
  const groups = arenas.map((arena) => ({ arena, lr: 1e-4 }));
  r.optimizer.update(groups, { step, maxGradNorm: c.maxGradNorm > 0 ? c.maxGradNorm : undefined, gradNorm: norm, nanFlag: flag });
  norm.dispose();
  meta.flush();
  const mark = meta.mark();
  return {
    mark,
    dispose: () => {
      for (const l of losses) l.dispose();
      flag.dispose();
    },
  };
}

/** As `Trainer.microStep`: conditioning, the noisy latents, the U-Net, the loss against the target, backward. */
function microStep(r: Run, accum: number): Tensor {
  const { meta, models, c } = r;
  const [B, h, w] = r.latent ?? [c.batchSize, c.resolution / 8, c.resolution / 8];
  const T = models.clip.maxPositions;
  return scope(() => {
    let context: Tensor;
    if (c.cacheTextEncoderOutputs && !c.trainTextEncoder) context = tensor(meta, [], [B, T, models.clip.width]);
    else {
      const te = new Layers(r.clipW, c.trainTextEncoder ? r.lora.adapter('te', { training: true }) : null);
      const ids = new Int32Array(B * T);
      context = c.trainTextEncoder ? clipForward(te, models.clip, ids, B, c.clipSkip) : noGrad(() => clipForward(te, models.clip, ids, B, c.clipSkip));
    }
    const pred = unetForward(new Layers(r.unetW, r.lora.adapter('unet', { training: true })), models.unet, empty(meta, [B, 4, h, w]), new Array<number>(B).fill(500), context, { gradientCheckpointing: c.gradientCheckpointing });
    const tgt = empty(meta, [B, 4, h, w]);
    const wt = empty(meta, [B]);
    const loss = c.loss === 'l2' ? mseLoss(pred, tgt, wt) : huberLoss(pred, tgt, c.huberDelta, wt);
    backward(scale(loss, 1 / accum));
    return loss;
  });
}
