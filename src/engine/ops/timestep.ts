// The sinusoidal timestep embedding of diffusion models (data in, no gradient).
import type { Backend } from '../backend.js';
import { timestepKernel } from '../kernels/timestep.js';
import { empty, tensor, type Tensor } from '../tensor.js';
import { check, launch } from './util.js';

export interface TimestepEmbeddingOptions {
  /** Cosines in the first half, sines in the second (diffusers' flip_sin_to_cos; SD 1.x: true). Default true. */
  flipSinToCos?: boolean;
  /** diffusers' downscale_freq_shift: frequencies exp(−ln(10000)·i/(dim/2 − shift)) (SD 1.x U-Net: 0). Default 0. */
  downscaleFreqShift?: number;
}

/**
 * Sinusoidal embedding of timesteps → [B, dim] f32, computed on the GPU as diffusers'
 * `get_timestep_embedding` (max_period 10000, scale 1): with half = ⌊dim/2⌋ and
 * freq_i = exp(−ln(10000)·i/(half − shift)), cos(t·freq) then sin(t·freq) (or sin first when
 * `flipSinToCos` is false), and a zero last column when dim is odd. Timesteps are data: no gradient.
 */
export function timestepEmbedding(backend: Backend, timesteps: readonly number[], dim: number, o: TimestepEmbeddingOptions = {}): Tensor {
  const shift = o.downscaleFreqShift ?? 0;
  check(Number.isInteger(dim) && dim >= 2, () => `timestepEmbedding: dim ${dim} must be an integer of at least 2`);
  check(Math.floor(dim / 2) - shift > 0, () => `timestepEmbedding: freq shift ${shift} leaves no frequencies for dim ${dim}`);
  check(timesteps.length > 0 && timesteps.every(Number.isFinite), () => `timestepEmbedding: timesteps must be finite numbers, got [${timesteps.join(', ')}]`);
  const B = timesteps.length;
  const t = tensor(backend, timesteps, [B]);
  const y = empty(backend, [B, dim]);
  launch(timestepKernel({ B, dim, flip: o.flipSinToCos ?? true, shift }), [t], [y]);
  t.dispose();
  return y;
}
