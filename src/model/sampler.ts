// Text-to-image sampling with DDIM (eta 0) and classifier-free guidance: the preview images a run renders.
import { noGrad } from '../engine/autograd.js';
import { scope, tensor, type Tensor } from '../engine/tensor.js';
import { clipForward } from './clip.js';
import { Layers, type Adapter } from './layers.js';
import type { Pipeline } from './pipeline.js';
import { unetForward } from './unet.js';
import { vaeDecode } from './vae.js';

export interface SampleOptions {
  prompt: string;
  /** The unconditional prompt of classifier-free guidance. Default: empty. */
  negativePrompt?: string;
  width: number;
  height: number;
  /** Denoising steps (DDIM, "leading" spacing with offset 1 as SD's scheduler config). */
  steps: number;
  /** Guidance scale; 1 runs the conditional prediction alone. */
  guidance: number;
  /** Starting latent noise, N(0, 1), [4 · height/8 · width/8]. */
  noise: Float32Array;
  /** The training schedule's ᾱ_t for t = 0..999. */
  alphasCumprod: Float64Array;
  prediction: 'epsilon' | 'v_prediction';
  clipSkip?: number;
  /** LoRA (or other) adapters for the U-Net and the text encoder. */
  adapters?: { unet?: Adapter | null; te?: Adapter | null };
}

export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8ClampedArray;
}

/** DDIM timesteps, high to low: t_i = i · ⌊1000 / steps⌋ + 1, reversed. */
export function ddimTimesteps(steps: number, trainSteps = 1000): number[] {
  if (!Number.isInteger(steps) || steps < 1 || steps > trainSteps) throw new Error(`sampling steps must be an integer from 1 to ${trainSteps}, got ${steps}`);
  const ratio = Math.floor(trainSteps / steps);
  return Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + 1);
}

/** One deterministic DDIM update from x_t to x_prev given the model output, in place on `x`. */
export function ddimStep(x: Float32Array, out: Float32Array, aT: number, aPrev: number, prediction: SampleOptions['prediction']): void {
  const [sa, sb] = [Math.sqrt(aT), Math.sqrt(1 - aT)];
  const [pa, pb] = [Math.sqrt(aPrev), Math.sqrt(1 - aPrev)];
  for (let i = 0; i < x.length; i++) {
    const xt = x[i]!;
    const m = out[i]!;
    const x0 = prediction === 'epsilon' ? (xt - sb * m) / sa : sa * xt - sb * m;
    const eps = prediction === 'epsilon' ? m : sa * m + sb * xt;
    x[i] = pa * x0 + pb * eps;
  }
}

/** Render one image: encode the prompts, denoise the latent step by step, decode with the VAE. */
export async function sampleImage(p: Pipeline, o: SampleOptions): Promise<RgbaImage> {
  const [h, w] = [o.height / 8, o.width / 8];
  if (!Number.isInteger(h) || !Number.isInteger(w)) throw new Error(`sample size ${o.width}x${o.height} must be a multiple of 8`);
  if (o.noise.length !== 4 * h * w) throw new Error(`sampleImage: noise has ${o.noise.length} values, expected ${4 * h * w}`);
  const backend = p.unet.weights.get('conv_in.weight').backend;
  const guided = o.guidance !== 1;
  const prompts = guided ? [o.negativePrompt ?? '', o.prompt] : [o.prompt];
  const B = prompts.length;
  const T = p.clip.config.maxPositions;
  const ids = prompts.flatMap((s) => [...p.tokenizer.encodeForModel(s, T)]);
  const context = noGrad(() => scope(() => clipForward(new Layers(p.clip.weights, o.adapters?.te ?? null), p.clip.config, ids, B, o.clipSkip ?? 1)));
  const unet = new Layers(p.unet.weights, o.adapters?.unet ?? null);
  const x = o.noise.slice();
  const n = x.length;
  const ts = ddimTimesteps(o.steps);
  try {
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i]!;
      const batch = new Float32Array(B * n);
      for (let b = 0; b < B; b++) batch.set(x, b * n);
      const pred = noGrad(() => scope(() => unetForward(unet, p.unet.config, tensor(backend, batch, [B, 4, h, w]), new Array<number>(B).fill(t), context)));
      const v = await pred.read();
      pred.dispose();
      const out = guided ? v.subarray(n).map((c, j) => v[j]! + o.guidance * (c - v[j]!)) : v;
      const aPrev = i + 1 < ts.length ? o.alphasCumprod[ts[i + 1]!]! : o.alphasCumprod[0]!;
      ddimStep(x, out, o.alphasCumprod[t]!, aPrev, o.prediction);
    }
  } finally {
    context.dispose();
  }
  const sf = p.vae.config.scalingFactor;
  const img: Tensor = noGrad(() => scope(() => vaeDecode(new Layers(p.vae.weights), p.vae.config, tensor(backend, x.map((v) => v / sf), [1, 4, h, w]))));
  const px = await img.read();
  img.dispose();
  return toRgba(px, o.width, o.height);
}

/** [3, H, W] in about [-1, 1] to RGBA bytes. */
export function toRgba(px: Float32Array, width: number, height: number): RgbaImage {
  const hw = width * height;
  const data = new Uint8ClampedArray(4 * hw);
  for (let i = 0; i < hw; i++) {
    for (let ch = 0; ch < 3; ch++) data[4 * i + ch] = Math.round((px[ch * hw + i]! + 1) * 127.5);
    data[4 * i + 3] = 255;
  }
  return { width, height, data };
}
