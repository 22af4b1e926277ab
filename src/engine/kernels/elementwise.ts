// Elementwise kernels: N broadcast inputs, one output, an f32 expression per element.
import type { DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import { broadcastIndex, input, main1d, output } from './wgsl.js';

/** Parameters of a map kernel: inputs read as `a`, `b`, `c`, ... in `expr`. */
export interface MapParams {
  outShape: number[];
  /** Per input: its dtype and strides in output coordinates (0 on broadcast dims). */
  inputs: { dtype: DType; strides: number[] }[];
  /** WGSL f32 expression over `a`, `b`, ... (for instance `a * b`). */
  expr: string;
  /** Extra WGSL functions the expression calls. */
  prelude?: string;
  /** Accumulate into the output instead of overwriting it. */
  accumulate?: boolean;
}

const NAMES = 'abcdefgh';
const WG = 256;

/*
 * One thread per output element (vectorizing is left to the memory system: consecutive threads
 * read consecutive addresses whenever the innermost dim is not broadcast). Broadcast index math is
 * unrolled with constant shapes so the compiler folds it.
 */
const mapSource = memoSource('map', (p: MapParams) => {
  const n = p.outShape.reduce((x, y) => x * y, 1);
  const decls = p.inputs.map((inp, i) => input(NAMES[i]!, i, inp.dtype)).join('\n');
  const loads = p.inputs.map((inp, i) => `  let ${NAMES[i]} = ld_${NAMES[i]}(${broadcastIndex('gi', p.outShape, inp.strides)});`).join('\n');
  return `${decls}
${output('out', p.inputs.length)}
${p.prelude ?? ''}
${main1d(WG)}
  if (gi >= ${n}u) { return; }
${loads}
  out[gi] = ${p.accumulate ? 'out[gi] + ' : ''}(${p.expr});
}`;
});

export function mapKernel(name: string, p: MapParams, flopsPerElement = 1): Kernel {
  const n = p.outShape.reduce((x, y) => x * y, 1);
  return {
    name,
    source: mapSource(p),
    workgroups: grid(Math.ceil(n / WG)),
    flops: n * flopsPerElement,
    bytes: n * 4 * (p.inputs.length + 1 + (p.accumulate ? 1 : 0)),
  };
}

/** WGSL activation functions shared by forward and backward expressions. */
export const ACTIVATIONS = `
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn erf_(x: f32) -> f32 {
  // Abramowitz-Stegun 7.1.26 is too coarse for gradients; use the W. J. Cody style rational fit.
  let ax = abs(x);
  let t = 1.0 / (1.0 + 0.5 * ax);
  let y = 1.0 - t * exp(-ax * ax - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
      t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(-y, y, x >= 0.0);
}
fn gelu(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_(x * 0.70710678118654752)); }
fn gelu_grad(x: f32) -> f32 { return 0.5 * (1.0 + erf_(x * 0.70710678118654752)) + x * 0.3989422804014327 * exp(-0.5 * x * x); }
fn tanh_(x: f32) -> f32 { let e = exp(-2.0 * abs(x)); let t = (1.0 - e) / (1.0 + e); return select(-t, t, x >= 0.0); }
fn gelu_tanh(x: f32) -> f32 { return 0.5 * x * (1.0 + tanh_(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
fn gelu_tanh_grad(x: f32) -> f32 {
  let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  let t = tanh_(u);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * x * x);
}
fn silu(x: f32) -> f32 { return x * sigmoid_(x); }
fn silu_grad(x: f32) -> f32 { let s = sigmoid_(x); return s * (1.0 + x * (1.0 - s)); }
fn quick_gelu(x: f32) -> f32 { return x * sigmoid_(1.702 * x); }
fn quick_gelu_grad(x: f32) -> f32 { let s = sigmoid_(1.702 * x); return s + 1.702 * x * s * (1.0 - s); }
`;
