// Sinusoidal timestep embedding kernel: [B] timesteps → [B, dim] cos/sin features (diffusers' get_timestep_embedding).
import { grid, memoSource, type Kernel } from '../kernel.js';
import { f, input, main1d, output } from './wgsl.js';

export interface TimestepParams {
  B: number;
  dim: number;
  /** Cosines in the first half (diffusers' flip_sin_to_cos). */
  flip: boolean;
  /** diffusers' downscale_freq_shift: frequencies are exp(−ln(10000)·i/(half − shift)). */
  shift: number;
}

/** The frequencies, rounded once to f32 (diffusers computes them in f32, so this matches within an ulp). */
export function timestepFrequencies(half: number, shift: number): number[] {
  return Array.from({ length: half }, (_, i) => Math.fround(Math.exp((-Math.log(10000) * i) / (half - shift))));
}

// π/2 split in three (Cody–Waite): P1 and P2 carry 8 significant bits each, so k·P1 and k·P2 are exact
// in f32 for quadrant counts k < 2^16, i.e. arguments up to about 100,000 radians.
const HALF_PI = Math.PI / 2;
const P1 = 1.5703125;
const P2 = Math.floor((HALF_PI - P1) * 2 ** 19) / 2 ** 19;
const P3 = Math.fround(HALF_PI - P1 - P2);

/** Taylor coefficients of sin (x³ … x⁹) and cos (x² … x¹⁰): on |x| ≤ π/4 the first omitted terms are below 2e-9. */
const SIN = [-1 / 6, 1 / 120, -1 / 5040, 1 / 362880];
const COS = [-1 / 2, 1 / 24, -1 / 720, 1 / 40320, -1 / 3628800];
const horner = (c: number[], x: string): string => c.reduceRight((acc, k, i) => (i === c.length - 1 ? f(k) : `${f(k)} + ${x} * (${acc})`), '');

const WG = 256;

/*
 * One thread per output element over a 2-D grid (consecutive threads write consecutive features of
 * one timestep). The frequency table is baked into the shader. The argument t·freq is formed in f32
 * as diffusers does; then the kernel computes its own sin and cos, to f32 accuracy on every device:
 * the argument is reduced by quadrants of π/2 to [−π/4, π/4] and both are evaluated by polynomials
 * (WGSL's built-in sin/cos only promise 2^-11 absolute error, SwiftShader's are near that, and
 * timesteps up to 999 give arguments up to 999 radians). An odd dim gets a zero last column.
 */
const source = memoSource('timestep_embedding', (p: TimestepParams) => {
  const half = Math.floor(p.dim / 2);
  const [first, second] = p.flip ? ['cs', 'sn'] : ['sn', 'cs'];
  return `${input('t', 0)}
${output('y', 1)}
const FREQ = array<f32, ${half}>(${timestepFrequencies(half, p.shift).map(f).join(', ')});
${main1d(WG)}
  if (gi >= ${p.B * p.dim}u) { return; }
  let b = gi / ${p.dim}u;
  let j = gi % ${p.dim}u;
  if (j >= ${2 * half}u) { y[gi] = 0.0; return; }
  let i = select(j - ${half}u, j, j < ${half}u);
  let arg = ld_t(b) * FREQ[i];
  let k = round(arg * ${f(1 / HALF_PI)});
  let a = ((arg - k * ${f(P1)}) - k * ${f(P2)}) - k * ${f(P3)};
  let q = i32(k) & 3;
  let a2 = a * a;
  let s = a + a * a2 * (${horner(SIN, 'a2')});
  let c = 1.0 + a2 * (${horner(COS, 'a2')});
  let sn = select(select(s, c, q == 1), select(-s, -c, q == 3), q >= 2);
  let cs = select(select(c, -s, q == 1), select(-c, s, q == 3), q >= 2);
  y[gi] = select(${second}, ${first}, j < ${half}u);
}`;
});

export function timestepKernel(p: TimestepParams): Kernel {
  const n = p.B * p.dim;
  return { name: 'timestep_embedding', source: source(p), workgroups: grid(Math.ceil(n / WG)), flops: 30 * n, bytes: 4 * p.B + 4 * n };
}
