// What a run will ask of the GPU, found by running one training step on the meta device (shapes only, no data).
import { MetaBackend } from '../engine/backend.js';
import { noGrad } from '../engine/autograd.js';
import { backward } from '../engine/grad.js';
import { mean } from '../engine/ops/elementwise.js';
import { empty, scope } from '../engine/tensor.js';
import { clipForward, clipWeightShapes, type ClipConfig } from '../model/clip.js';
import { Layers } from '../model/layers.js';
import { LoraNetwork, loraTargets } from '../model/lora.js';
import { metaWeights } from '../model/pipeline.js';
import { unetForward, unetWeightShapes, type UNetConfig } from '../model/unet.js';
import { vaeEncode, vaeWeightShapes, type VaeConfig } from '../model/vae.js';
import type { TrainConfig } from './config.js';

export interface MemoryEstimate {
  /** Frozen U-Net, text-encoder and VAE weights (f16). */
  weightBytes: number;
  /** LoRA parameters, their gradients and the optimizer's state. */
  networkBytes: number;
  /** The most bytes live at once over latent caching and a training step, weights included. */
  peakBytes: number;
  /** The largest single buffer: it must fit the adapter's maxStorageBufferBindingSize. */
  largestBuffer: number;
  /** Floating-point operations of one optimizer step (all micro-batches). */
  flopsPerStep: number;
}

/** f32 state tensors each optimizer keeps per LoRA parameter. */
const STATE_COPIES: Record<TrainConfig['optimizer'], number> = { adamw: 2, lion: 1, sgd: 1, prodigy: 4 };

/** A meta-device backend that also remembers the largest buffer asked for. */
class SizingMeta extends MetaBackend {
  largest = 0;
  override alloc(bytes: number) {
    this.largest = Math.max(this.largest, bytes);
    return super.alloc(bytes);
  }
}

/**
 * Estimate the GPU memory of a run with these settings on a model of these configs: the weights,
 * the VAE encoding an image at the training resolution, and one micro-batch of forward and backward
 * at the training resolution (buckets keep about the same area), plus the optimizer's state.
 */
export function estimateTrainingMemory(models: { unet: UNetConfig; clip: ClipConfig; vae: VaeConfig }, c: TrainConfig): MemoryEstimate {
  const meta = new SizingMeta();
  const unetW = metaWeights(meta, unetWeightShapes(models.unet));
  const clipW = metaWeights(meta, clipWeightShapes(models.clip));
  const vaeW = metaWeights(meta, vaeWeightShapes(models.vae));
  const weightBytes = unetW.bytes + clipW.bytes + vaeW.bytes;
  const specs = loraTargets(models.unet, c.trainTextEncoder ? models.clip : null, { rank: c.networkDim, alpha: c.networkAlpha, convRank: c.convDim, convAlpha: c.convAlpha, textEncoder: c.trainTextEncoder });
  const lora = new LoraNetwork(meta, specs, 0);
  const arenas = [lora.arenas.unet, ...(lora.arenas.te ? [lora.arenas.te] : [])];
  const paramElems = arenas.reduce((a, x) => a + x.numel, 0);
  const stateBytes = STATE_COPIES[c.optimizer] * paramElems * 4;
  const networkBytes = 2 * paramElems * 4 + stateBytes;
  const state = arenas.map((a) => empty(meta, [STATE_COPIES[c.optimizer] * a.numel]));
  meta.resetPeak();

  const r = c.resolution;
  const enc = noGrad(() => scope(() => vaeEncode(new Layers(vaeW), models.vae, empty(meta, [1, 3, r, r]))));
  enc.mean.dispose();
  enc.logvar.dispose();
  meta.resetStats();

  const B = c.batchSize;
  const T = models.clip.maxPositions;
  for (let m = 0; m < c.gradAccumulation; m++) {
    const loss = scope(() => {
      const ids = new Int32Array(B * T);
      const te = new Layers(clipW, c.trainTextEncoder ? lora.adapter('te') : null);
      const context = c.trainTextEncoder ? clipForward(te, models.clip, ids, B, c.clipSkip) : noGrad(() => clipForward(te, models.clip, ids, B, c.clipSkip));
      const pred = unetForward(new Layers(unetW, lora.adapter('unet')), models.unet, empty(meta, [B, 4, r / 8, r / 8]), new Array<number>(B).fill(500), context, { gradientCheckpointing: c.gradientCheckpointing });
      return mean(pred);
    });
    backward(loss);
    loss.dispose();
  }
  const est: MemoryEstimate = { weightBytes, networkBytes, peakBytes: meta.pool().peakLiveBytes, largestBuffer: meta.largest, flopsPerStep: meta.stats.flops };
  for (const s of state) s.dispose();
  lora.dispose();
  unetW.dispose();
  clipW.dispose();
  vaeW.dispose();
  return est;
}
