// Text-to-image sampling with classifier-free guidance: DDIM (eta 0), Euler and Euler ancestral, for previews and the Try-it panel.
import { noGrad } from '../engine/autograd.js';
import type { Rng } from '../engine/rng.js';
import { scope, tensor, type Tensor } from '../engine/tensor.js';
import { clipForward } from './clip.js';
import { Layers, type Adapter } from './layers.js';
import type { Pipeline } from './pipeline.js';
import { unetForward } from './unet.js';
import { vaeDecode } from './vae.js';

/** The samplers: DDIM (deterministic), Euler (deterministic, k-diffusion's sigmas), Euler ancestral (adds fresh noise each step). */
export type SamplerKind = 'ddim' | 'euler' | 'euler_a';

export interface SampleOptions {
  prompt: string;
  /** The unconditional prompt of classifier-free guidance. Default: empty. */
  negativePrompt?: string;
  width: number;
  height: number;
  /** Denoising steps (one U-Net evaluation each, two prompts batched when guided). */
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
  /** Default 'ddim'. */
  sampler?: SamplerKind;
  /** Euler ancestral's fresh noise each step (required for it; the others draw nothing). */
  rng?: Rng;
  /** Called after each denoising step with the steps done and the total (before the VAE decode). */
  onStep?: (done: number, total: number) => void;
  /** Looked at after each denoising step (after `onStep`): once aborted, the render stops there with a `RenderCancelled`. */
  signal?: AbortSignal;
}

/** A render stopped by its signal between denoising steps: "Cancelled at step k of n". */
export class RenderCancelled extends Error {
  constructor(readonly step: number, readonly steps: number) {
    super(`Cancelled at step ${step} of ${steps}`);
    this.name = 'RenderCancelled';
  }
}

/** After a denoising step: report it, then stop if the render was cancelled meanwhile. */
function stepDone(o: SampleOptions, done: number, total: number): void {
  o.onStep?.(done, total);
  if (o.signal?.aborted) throw new RenderCancelled(done, total);
}

export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8ClampedArray;
}

/** DDIM timesteps, high to low: t_i = i · ⌊1000 / steps⌋ + 1, reversed. */
export function ddimTimesteps(steps: number, trainSteps = 1000): number[] {
  checkSteps(steps, trainSteps);
  const ratio = Math.floor(trainSteps / steps);
  return Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + 1);
}

function checkSteps(steps: number, trainSteps: number): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > trainSteps) throw new Error(`sampling steps must be an integer from 1 to ${trainSteps}, got ${steps}`);
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

/** ᾱ floor where a zero-terminal-SNR schedule reaches 0 (σ would be infinite): diffusers' Euler uses 2^-24 there too. */
const MIN_ALPHA = 2 ** -24;

/**
 * Euler's grid as k-diffusion (and so AUTOMATIC1111) builds it: `steps` timesteps spaced evenly
 * from 999 down to 0, σ(t) = sqrt((1 − ᾱ_t) / ᾱ_t) interpolated in log σ between integer
 * timesteps, then a final σ = 0. Returns the (fractional) timesteps and steps + 1 sigmas.
 */
export function eulerSchedule(steps: number, alphasCumprod: Float64Array): { timesteps: number[]; sigmas: number[] } {
  const T = alphasCumprod.length;
  checkSteps(steps, T);
  const logSigma = (t: number) => 0.5 * Math.log((1 - Math.max(alphasCumprod[t]!, MIN_ALPHA)) / Math.max(alphasCumprod[t]!, MIN_ALPHA));
  const timesteps = Array.from({ length: steps }, (_, i) => (steps === 1 ? T - 1 : ((T - 1) * (steps - 1 - i)) / (steps - 1)));
  const sigmas = timesteps.map((t) => {
    const lo = Math.floor(t);
    const hi = Math.min(lo + 1, T - 1);
    const w = t - lo;
    return Math.exp((1 - w) * logSigma(lo) + w * logSigma(hi));
  });
  return { timesteps, sigmas: [...sigmas, 0] };
}

/**
 * The denoised latent x̂0 from k-diffusion's x = x0 + σ·ε and the model output at input x / sqrt(σ² + 1):
 * ε-prediction x − σ·ε̂; v-prediction x / (σ² + 1) − σ / sqrt(σ² + 1) · v̂.
 */
export function denoisedFrom(x: Float32Array, out: Float32Array, sigma: number, prediction: SampleOptions['prediction']): Float32Array {
  const s2 = sigma * sigma + 1;
  const [cSkip, cOut] = prediction === 'epsilon' ? [1, -sigma] : [1 / s2, -sigma / Math.sqrt(s2)];
  return x.map((v, i) => cSkip * v + cOut * out[i]!);
}

/**
 * One Euler step from σ to σ_next along d = (x − x̂0) / σ, in place on `x`. With `noise` (ancestral),
 * the step goes down to σ_down and adds σ_up · noise, where σ_up = min(σ_next, sqrt(σ_next² (σ² − σ_next²) / σ²))
 * and σ_down² + σ_up² = σ_next² (eta 1, as k-diffusion's sample_euler_ancestral).
 */
export function eulerStep(x: Float32Array, denoised: Float32Array, sigma: number, sigmaNext: number, noise?: Float32Array): void {
  const up = noise ? Math.min(sigmaNext, Math.sqrt(Math.max(0, (sigmaNext * sigmaNext * (sigma * sigma - sigmaNext * sigmaNext)) / (sigma * sigma)))) : 0;
  const down = Math.sqrt(sigmaNext * sigmaNext - up * up);
  for (let i = 0; i < x.length; i++) {
    const d = (x[i]! - denoised[i]!) / sigma;
    x[i] = x[i]! + d * (down - sigma) + (noise && up > 0 ? up * noise[i]! : 0);
  }
}

/** The guided model output at one timestep: `x` is the U-Net's input, the prompts' contexts batched as [negative, positive]. */
type Predict = (x: Float32Array, t: number) => Promise<Float32Array>;

/** DDIM from noise to the final latent. */
async function runDdim(o: SampleOptions, predict: Predict): Promise<Float32Array> {
  const x = o.noise.slice();
  const ts = ddimTimesteps(o.steps);
  for (let i = 0; i < ts.length; i++) {
    const t = ts[i]!;
    const aPrev = i + 1 < ts.length ? o.alphasCumprod[ts[i + 1]!]! : o.alphasCumprod[0]!;
    ddimStep(x, await predict(x, t), o.alphasCumprod[t]!, aPrev, o.prediction);
    stepDone(o, i + 1, ts.length);
  }
  return x;
}

/** Euler (ancestral with `o.rng`) from noise · σ_max to the final latent. */
async function runEuler(o: SampleOptions, predict: Predict, ancestral: boolean): Promise<Float32Array> {
  if (ancestral && !o.rng) throw new Error('sampleImage: Euler ancestral needs an rng for its per-step noise');
  const { timesteps, sigmas } = eulerSchedule(o.steps, o.alphasCumprod);
  const x = o.noise.map((v) => v * sigmas[0]!);
  for (let i = 0; i < timesteps.length; i++) {
    const sigma = sigmas[i]!;
    const cIn = 1 / Math.sqrt(sigma * sigma + 1);
    const out = await predict(x.map((v) => v * cIn), timesteps[i]!);
    const noise = ancestral ? o.rng!.normals(x.length) : undefined;
    eulerStep(x, denoisedFrom(x, out, sigma, o.prediction), sigma, sigmas[i + 1]!, noise);
    stepDone(o, i + 1, timesteps.length);
  }
  return x;
}

/** Render one image: encode the prompts, denoise the latent step by step with the chosen sampler, decode with the VAE. */
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
  const n = o.noise.length;
  const predict: Predict = async (x, t) => {
    const batch = new Float32Array(B * n);
    for (let b = 0; b < B; b++) batch.set(x, b * n);
    const pred = noGrad(() => scope(() => unetForward(unet, p.unet.config, tensor(backend, batch, [B, 4, h, w]), new Array<number>(B).fill(t), context)));
    const v = await pred.read();
    pred.dispose();
    return guided ? v.subarray(n).map((c, j) => v[j]! + o.guidance * (c - v[j]!)) : v;
  };
  let x: Float32Array;
  try {
    const kind = o.sampler ?? 'ddim';
    x = kind === 'ddim' ? await runDdim(o, predict) : await runEuler(o, predict, kind === 'euler_a');
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
