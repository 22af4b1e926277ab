// GEGLU kernels: out = value · gelu(gate) over the two halves of the last dimension, and its backward.
import { grid, memoSource, type Kernel } from '../kernel.js';
import { ACTIVATIONS } from './elementwise.js';
import { input, main1d, output, packUniforms, uniformDecl, type UniformField } from './wgsl.js';

/** x [rows, 2F] → y [rows, F]. */
export interface GegluParams {
  rows: number;
  F: number;
}

const WG = 256;

/** Sizes from uniforms (one pipeline per direction for every shape): output elements and F. */
const FIELDS: UniformField[] = [['n', 'u32'], ['F', 'u32']];
const uniforms = (p: GegluParams) => packUniforms(FIELDS, [p.rows * p.F, p.F]);

/** Loads for output `gi`: its row r, column j, and the value and gate it combines. */
const head = (binding: number) => `${uniformDecl(binding, FIELDS)}
${main1d(WG)}
  if (gi >= u.n) { return; }
  let r = gi / u.F;
  let j = gi % u.F;
  let iv = r * 2u * u.F + j;
  let val = ld_x(iv);
  let gate = ld_x(iv + u.F);`;

/*
 * One thread per output element over a 2-D grid: consecutive threads read consecutive values and
 * consecutive gates (two coalesced streams F apart) and write consecutive outputs. GELU is the exact
 * erf form shared with the activation kernels.
 */
const forwardSource = memoSource('geglu', () => `${input('x', 0)}
${output('y', 1)}
${ACTIVATIONS}
${head(2)}
  y[gi] = val * gelu(gate);
}`);

/* Backward, same tiling: each thread writes both of its inputs' gradients (value and gate halves). */
const backwardSource = memoSource('geglu_back', () => `${input('x', 0)}
${input('g', 1)}
${output('dx', 2)}
${ACTIVATIONS}
${head(3)}
  let gv = ld_g(gi);
  dx[iv] = gv * gelu(gate);
  dx[iv + u.F] = gv * val * gelu_grad(gate);
}`);

export function gegluKernel(p: GegluParams): Kernel {
  const n = p.rows * p.F;
  return { name: 'geglu', source: forwardSource(undefined), workgroups: grid(Math.ceil(n / WG)), flops: 26 * n, bytes: 12 * n, uniforms: uniforms(p) };
}

export function gegluBackwardKernel(p: GegluParams): Kernel {
  const n = p.rows * p.F;
  return { name: 'geglu_back', source: backwardSource(undefined), workgroups: grid(Math.ceil(n / WG)), flops: 50 * n, bytes: 20 * n, uniforms: uniforms(p) };
}
