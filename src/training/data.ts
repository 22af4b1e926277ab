// The training data: latents cached from the images, the epoch's batches, and drawing one training example (flip, timestep, noise, caption).
import { noGrad } from '../engine/autograd.js';
import type { Backend } from '../engine/backend.js';
import { scope, tensor, type Tensor } from '../engine/tensor.js';
import { clipForward } from '../model/clip.js';
import { Layers } from '../model/layers.js';
import type { Pipeline } from '../model/pipeline.js';
import { vaeEncode, type VaeConfig } from '../model/vae.js';
import { assignBucket, trainingBuckets, type Bucket } from './buckets.js';
import { processCaption } from './captions.js';
import type { TrainConfig } from './config.js';
import { toTensorData, type RgbaImage } from './images.js';
import { applyNoiseOffset, sampleTimestep } from './noise.js';
import { Rng } from './rng.js';
import type { MicroBatch } from './step.js';

/** An image of the dataset: its path in the set is its name (folders included, `10_cat/1.png`). */
export interface TrainItem {
  name: string;
  image: RgbaImage;
  caption: string;
  /** Times it is drawn per epoch, from its kohya `N_` folder; absent: config.repeats. */
  repeats?: number;
  /** Marked for validation: held out of training when `config.validation` is 'holdout' (validation.ts). */
  validation?: boolean;
}

/** One training example, fully determined before any GPU work (so micro-batch splits do not change it). */
export interface TrainingExample {
  /** Index of the image in the dataset. */
  item: number;
  /** Take the mirror image's latent. */
  flip: boolean;
  timestep: number;
  /** ε, [C, h, w] like the latent, offset noise included. */
  noise: Float32Array;
  /** The caption after shuffling, tag and caption dropout and the trigger word. */
  caption: string;
}

/** An image's cached latent, [C, h, w] at its bucket's size over the VAE factor, and its mirror image's when flipping is on. */
export interface Latent {
  bucket: Bucket;
  data: Float32Array;
  flipped: Float32Array | null;
}

/** What latent encoding checks between images: a pause waits there, a stop ends it (RunControl). */
export interface EncodeControl {
  readonly state: string;
  waitWhilePaused(): Promise<void>;
}

/** How many image pixels one latent pixel covers per side: the VAE halves the size between levels (SD: 8). */
export function latentFactor(vae: Pick<VaeConfig, 'blockChannels'>): number {
  return 2 ** (vae.blockChannels.length - 1);
}

/** The bucket an image trains at: the grid's closest aspect ratio (the one square when bucketing is off). */
export function bucketOf(it: TrainItem, buckets: readonly Bucket[]): Bucket {
  return assignBucket(it.image.width, it.image.height, buckets);
}

/**
 * The VAE's latent distribution of images [B, 3, H, W] (made by `images` inside the scope, so freed
 * with the rest): mean and log-variance [B, C, H/f, W/f], without gradient. The trainer's and the forecast's one encoding.
 */
export function latentMoments(vae: Pick<Pipeline['vae'], 'config' | 'weights'>, images: () => Tensor): { mean: Tensor; logvar: Tensor } {
  return noGrad(() => scope(() => vaeEncode(new Layers(vae.weights), vae.config, images())));
}

/**
 * One image's latent, [C, h, w]: the VAE's mean and log-variance read back, then a sample of that
 * distribution times the scaling factor (kohya caches latent_dist.sample()).
 */
async function encodeLatent(backend: Backend, vae: Pipeline['vae'], image: RgbaImage, bucket: Bucket, flip: boolean, rng: Rng): Promise<Float32Array> {
  const px = toTensorData(image, bucket, flip); // [3, H, W] in [-1, 1]
  const { mean, logvar } = latentMoments(vae, () => tensor(backend, px, [1, 3, bucket.height, bucket.width]));
  const [m, lv] = await Promise.all([mean.read(), logvar.read()]);
  mean.dispose();
  logvar.dispose();
  return m.map((v, j) => (v + Math.exp(0.5 * lv[j]!) * rng.normal()) * vae.config.scalingFactor);
}

/**
 * Encode every image once with the VAE (and its mirror image when flipping is on). `control` is
 * checked between images: a pause waits there, a stop ends the encoding (null: nothing complete).
 */
export async function encodeLatents(backend: Backend, vae: Pipeline['vae'], items: readonly TrainItem[], c: TrainConfig, rng: Rng, onProgress?: (done: number, total: number) => void, control?: EncodeControl): Promise<Latent[] | null> {
  const buckets = trainingBuckets(c);
  const latents: Latent[] = [];
  for (const [i, it] of items.entries()) {
    await control?.waitWhilePaused();
    if (control?.state === 'stopping') return null;
    const bucket = bucketOf(it, buckets);
    const data = await encodeLatent(backend, vae, it.image, bucket, false, rng);
    latents.push({ bucket, data, flipped: c.flipAug ? await encodeLatent(backend, vae, it.image, bucket, true, rng) : null });
    onProgress?.(i + 1, items.length);
  }
  return latents;
}

/**
 * The frozen text encoder's output [T, width] once per distinct caption, kept on the host. Valid
 * configs allow this only with a frozen encoder and captions that no random choice changes, so
 * every example's caption is one of these.
 */
export async function encodeTextContexts(p: Pick<Pipeline, 'clip' | 'tokenizer'>, items: readonly TrainItem[], c: TrainConfig): Promise<Map<string, Float32Array>> {
  if (c.trainTextEncoder) throw new Error('Text-encoder outputs cannot be cached while the text encoder is trained');
  const { clip, tokenizer } = p;
  const L = new Layers(clip.weights);
  const fixed = new Rng(0); // drawn from by nothing: these settings have no random choice
  const contexts = new Map<string, Float32Array>();
  for (const it of items) {
    const caption = finalCaption(it.caption, { ...c, shuffleCaptions: false, captionDropout: 0, tagDropout: 0 }, fixed);
    if (contexts.has(caption)) continue;
    const ctx = noGrad(() => scope(() => clipForward(L, clip.config, tokenizer.encodeForModel(caption, clip.config.maxPositions), 1, c.clipSkip)));
    contexts.set(caption, await ctx.read());
    ctx.dispose();
  }
  return contexts;
}

/** A caption as one example trains on it: shuffled, dropped and with the trigger word as the settings say. */
function finalCaption(caption: string, c: TrainConfig, rng: Rng): string {
  const o = { shuffle: c.shuffleCaptions, keepTokens: c.keepTokens, captionDropout: c.captionDropout, tagDropout: c.tagDropout, triggerWord: c.triggerWord };
  return processCaption(caption, o, rng);
}

/**
 * One epoch's batches of item indices: each image its repeats (its folder's, else the setting),
 * grouped by bucket, shuffled within a bucket and cut into batches, then the batches shuffled.
 */
export function epochBatches(items: readonly TrainItem[], latents: readonly Latent[], c: TrainConfig, rng: Rng): number[][] {
  const byBucket = new Map<string, number[]>();
  const reps = items.map((it) => it.repeats ?? c.repeats);
  const most = Math.max(...reps);
  // Repeat-major order: with one count for all, the order is as it always was.
  for (let r = 0; r < most; r++)
    latents.forEach((l, i) => {
      if (r >= reps[i]!) return;
      const k = `${l.bucket.width}x${l.bucket.height}`;
      const list = byBucket.get(k);
      if (list) list.push(i);
      else byBucket.set(k, [i]);
    });
  const batches: number[][] = [];
  for (const idx of byBucket.values()) {
    rng.shuffle(idx);
    for (let i = 0; i < idx.length; i += c.batchSize) batches.push(idx.slice(i, i + c.batchSize));
  }
  rng.shuffle(batches);
  return batches;
}

/**
 * Draw everything random about one example, in this order: the noise [C, h, w] with its per-channel
 * offset, the flip, the timestep, the caption.
 */
export function drawExample(item: number, it: TrainItem, latent: Latent, c: TrainConfig, channels: number, rng: Rng): TrainingExample {
  const noise = applyNoiseOffset(rng.normals(latent.data.length), channels, c.noiseOffset, rng);
  const flip = !!latent.flipped && rng.next() < 0.5;
  const timestep = sampleTimestep(rng);
  return { item, flip, timestep, noise, caption: finalCaption(it.caption, c, rng) };
}

/** The examples (one bucket) as a step takes them: latents and noise [B, C, h, w], timesteps, captions. */
export function microBatch(examples: readonly TrainingExample[], latents: readonly Latent[], factor: number): MicroBatch {
  const l0 = latents[examples[0]!.item]!;
  const n = l0.data.length;
  const x0 = new Float32Array(examples.length * n);
  const noise = new Float32Array(examples.length * n);
  examples.forEach((e, b) => {
    const lat = latents[e.item]!;
    x0.set(e.flip ? lat.flipped! : lat.data, b * n);
    noise.set(e.noise, b * n);
  });
  return { latents: x0, noise, timesteps: examples.map((e) => e.timestep), captions: examples.map((e) => e.caption), height: l0.bucket.height / factor, width: l0.bucket.width / factor };
}

/**
 * The [batch, height, width] latent shapes of a run's micro-batches: per bucket in use, a full batch
 * and the short last one. Images without a latent yet are placed in their bucket from their size.
 */
export function stepShapes(items: readonly TrainItem[], latents: readonly Latent[], c: TrainConfig, factor: number): [number, number, number][] {
  const buckets = trainingBuckets(c);
  const perBucket = new Map<string, { bucket: Bucket; n: number }>();
  items.forEach((it, i) => {
    const bucket = latents[i]?.bucket ?? bucketOf(it, buckets);
    const k = `${bucket.width}x${bucket.height}`;
    const e = perBucket.get(k) ?? { bucket, n: 0 };
    e.n += it.repeats ?? c.repeats;
    perBucket.set(k, e);
  });
  const B = c.batchSize;
  const shapes: [number, number, number][] = [];
  for (const { bucket, n } of perBucket.values()) {
    for (const b of new Set([Math.min(B, n), n % B].filter((x) => x > 0))) shapes.push([b, bucket.height / factor, bucket.width / factor]);
  }
  return shapes;
}
