// GEGLU kernels: out = value · gelu(gate) over the two halves of the last dimension, and its backward.
import { grid, memoSource, type Kernel } from '../kernel.js';
import { ACTIVATIONS } from './elementwise.js';
import { input, main1d, output } from './wgsl.js';

/** x [rows, 2F] → y [rows, F]. */
export interface GegluParams {
  rows: number;
  F: number;
}

const WG = 256;

/** Loads for output `gi`: its row r, column j, and the value and gate it combines. */
const head = (p: GegluParams) => `${main1d(WG)}
  if (gi >= ${p.rows * p.F}u) { return; }
  let r = gi / ${p.F}u;
  let j = gi % ${p.F}u;
  let iv = r * ${2 * p.F}u + j;
  let val = ld_x(iv);
  let gate = ld_x(iv + ${p.F}u);`;

/*
 * One thread per output element over a 2-D grid: consecutive threads read consecutive values and
 * consecutive gates (two coalesced streams F apart) and write consecutive outputs. GELU is the exact
 * erf form shared with the activation kernels.
 */
const forwardSource = memoSource('geglu', (p: GegluParams) => `${input('x', 0)}
${output('y', 1)}
${ACTIVATIONS}
${head(p)}
  y[gi] = val * gelu(gate);
}`);

/* Backward, same tiling: each thread writes both of its inputs' gradients (value and gate halves). */
const backwardSource = memoSource('geglu_back', (p: GegluParams) => `${input('x', 0)}
${input('g', 1)}
${output('dx', 2)}
${ACTIVATIONS}
${head(p)}
  let gv = ld_g(gi);
  dx[iv] = gv * gelu(gate);
  dx[iv + ${p.F}u] = gv * val * gelu_grad(gate);
}`);

export function gegluKernel(p: GegluParams): Kernel {
  const n = p.rows * p.F;
  return { name: 'geglu', source: forwardSource(p), workgroups: grid(Math.ceil(n / WG)), flops: 26 * n, bytes: 12 * n };
}

export function gegluBackwardKernel(p: GegluParams): Kernel {
  const n = p.rows * p.F;
  return { name: 'geglu_back', source: backwardSource(p), workgroups: grid(Math.ceil(n / WG)), flops: 50 * n, bytes: 20 * n };
}
