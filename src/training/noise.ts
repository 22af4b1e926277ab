// The DDPM noise schedule SD 1.x was trained with, SNR and min-SNR weights, and the noising and v targets (float64 on the CPU).
import type { Rng } from './rng.js';

export type Prediction = 'epsilon' | 'v_prediction';

export interface NoiseScheduleOptions {
  /** Training timesteps (SD: 1000). */
  steps?: number;
  /** First and last beta of the scaled-linear schedule (SD: 0.00085, 0.012). */
  betaStart?: number;
  betaEnd?: number;
  /** Rescale so the last step has zero SNR (Lin et al. 2023); for v-prediction. */
  zeroTerminalSnr?: boolean;
}

/** A schedule's per-timestep tables, index t = 0 … steps-1. */
export interface NoiseSchedule {
  steps: number;
  betas: Float64Array;
  alphasCumprod: Float64Array;
  /** acp / (1 - acp); 0 at the last step under zero terminal SNR. */
  snr: Float64Array;
}

/** betas = linspace(sqrt(start), sqrt(end), steps)^2, linspace computed as numpy does (start + i*delta, last = end). */
export function scaledLinearBetas(steps = 1000, betaStart = 0.00085, betaEnd = 0.012): Float64Array {
  const a = Math.sqrt(betaStart);
  const b = Math.sqrt(betaEnd);
  const delta = (b - a) / (steps - 1);
  const betas = new Float64Array(steps);
  for (let i = 0; i < steps; i++) betas[i] = (i === steps - 1 ? b : a + i * delta) ** 2;
  return betas;
}

/**
 * Lin et al. 2023, Algorithm 1 (as diffusers' rescale_zero_terminal_snr): shift sqrt(acp) so the
 * last step is 0, scale so the first is unchanged, and turn the result back into betas.
 */
export function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const n = betas.length;
  const sqrtAcp = cumprod(betas.map((b) => 1 - b)).map(Math.sqrt);
  const s0 = sqrtAcp[0]!;
  const sT = sqrtAcp[n - 1]!;
  const acp = sqrtAcp.map((v) => ((v - sT) * s0) / (s0 - sT)).map((v) => v * v);
  return acp.map((v, i) => 1 - (i === 0 ? v : v / acp[i - 1]!));
}

function cumprod(a: Float64Array): Float64Array {
  let p = 1;
  return a.map((v) => (p *= v));
}

/** The full schedule; defaults are SD 1.x's (1000 scaled-linear steps from 0.00085 to 0.012). */
export function ddpmSchedule(o: NoiseScheduleOptions = {}): NoiseSchedule {
  const steps = o.steps ?? 1000;
  if (!Number.isInteger(steps) || steps < 2) throw new RangeError(`A noise schedule needs at least 2 whole steps (got ${steps})`);
  let betas = scaledLinearBetas(steps, o.betaStart ?? 0.00085, o.betaEnd ?? 0.012);
  if (o.zeroTerminalSnr) betas = rescaleZeroTerminalSnr(betas);
  const alphasCumprod = cumprod(betas.map((b) => 1 - b));
  return { steps, betas, alphasCumprod, snr: alphasCumprod.map(snr) };
}

/** alphas_cumprod of SD's schedule, optionally rescaled to zero terminal SNR. */
export function alphasCumprod(zeroTerminalSnr = false, steps = 1000): Float64Array {
  return ddpmSchedule({ steps, zeroTerminalSnr }).alphasCumprod;
}

/** Signal-to-noise ratio acp / (1 - acp). */
export function snr(acp: number): number {
  return acp / (1 - acp);
}

/**
 * Min-SNR-γ loss weight (Hang et al. 2023, as kohya applies it): min(snr, γ)/snr for epsilon,
 * min(snr, γ)/(snr + 1) for v. γ = 0 turns weighting off (weight 1). At snr = 0 (the last step
 * under zero terminal SNR) epsilon takes its limit 1 instead of 0/0; v gives 0.
 */
export function minSnrWeight(acp: number, gamma: number, prediction: Prediction): number {
  if (gamma <= 0) return 1;
  const s = snr(acp);
  if (prediction === 'epsilon') return s === 0 ? 1 : Math.min(s, gamma) / s;
  return Math.min(s, gamma) / (s + 1);
}

/** x_t = signal * x0 + noise * ε, with signal = sqrt(acp), noise = sqrt(1 - acp). */
export function noisingCoefficients(acp: number): { signal: number; noise: number } {
  return { signal: Math.sqrt(acp), noise: Math.sqrt(1 - acp) };
}

/** x_t = sqrt(acp) x0 + sqrt(1 - acp) ε, elementwise. */
export function addNoise(x0: ArrayLike<number>, eps: ArrayLike<number>, acp: number, out = new Float32Array(x0.length)): Float32Array {
  const { signal, noise } = noisingCoefficients(acp);
  for (let i = 0; i < out.length; i++) out[i] = signal * x0[i]! + noise * eps[i]!;
  return out;
}

/** The v target sqrt(acp) ε - sqrt(1 - acp) x0, elementwise. */
export function velocity(x0: ArrayLike<number>, eps: ArrayLike<number>, acp: number, out = new Float32Array(x0.length)): Float32Array {
  const { signal, noise } = noisingCoefficients(acp);
  for (let i = 0; i < out.length; i++) out[i] = signal * eps[i]! - noise * x0[i]!;
  return out;
}

/** What the U-Net is trained to output: ε itself, or v. */
export function predictionTarget(prediction: Prediction, x0: ArrayLike<number>, eps: ArrayLike<number>, acp: number, out = new Float32Array(x0.length)): Float32Array {
  if (prediction === 'v_prediction') return velocity(x0, eps, acp, out);
  for (let i = 0; i < out.length; i++) out[i] = eps[i]!;
  return out;
}

/**
 * Offset noise for one sample laid out [channels, ...]: each channel gets offset * N(0, 1) added to
 * all its elements (kohya: noise + offset * randn(B, C, 1, 1)). In place.
 */
export function applyNoiseOffset(noise: Float32Array, channels: number, offset: number, rng: Rng): Float32Array {
  if (offset === 0) return noise;
  if (noise.length % channels !== 0) throw new RangeError(`Noise of ${noise.length} values does not split into ${channels} channels`);
  const per = noise.length / channels;
  for (let c = 0; c < channels; c++) {
    const o = offset * rng.normal();
    for (let j = c * per; j < (c + 1) * per; j++) noise[j] = noise[j]! + o;
  }
  return noise;
}

/** A training timestep, uniform in [0, steps). */
export function sampleTimestep(rng: Rng, steps = 1000): number {
  return rng.int(0, steps);
}
