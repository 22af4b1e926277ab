// Elementwise kernels: N broadcast inputs, one output, an f32 expression per element.
import type { DType } from '../dtype.js';
import { grid, MAX_UNIFORM_WORDS, memoSource, type Kernel } from '../kernel.js';
import { collapseDims, input, main1d, output, packUniforms, uniformDecl, type UniformField } from './wgsl.js';

/** Parameters of a map kernel: inputs read as `a`, `b`, `c`, ... in `expr`. */
export interface MapParams {
  outShape: number[];
  /** Per input: its dtype and strides in output coordinates (0 on broadcast dims). */
  inputs: { dtype: DType; strides: number[] }[];
  /** WGSL f32 expression over `a`, `b`, ... and the scalars `k0`, `k1`, ... (for instance `a + k0 * b`). */
  expr: string;
  /** Run-time f32 constants the expression reads as `k0`, `k1`, ... (a scale, an alpha). */
  scalars?: number[];
  /** Extra WGSL functions the expression calls. */
  prelude?: string;
  /** Accumulate into the output instead of overwriting it. */
  accumulate?: boolean;
}

const NAMES = 'abcdefgh';
const WG = 256;

/** What the source depends on: the collapsed rank, dtypes and the expression, never the sizes. */
interface MapSourceParams {
  rank: number;
  dtypes: DType[];
  expr: string;
  scalars: number;
  prelude: string;
  accumulate: boolean;
}

function mapFields(p: MapSourceParams): UniformField[] {
  const fields: UniformField[] = [['n', 'u32']];
  for (let d = 0; d < p.rank; d++) fields.push([`d${d}`, 'u32']);
  p.dtypes.forEach((_, i) => {
    for (let d = 0; d < p.rank; d++) fields.push([`s${NAMES[i]}${d}`, 'u32']);
  });
  for (let j = 0; j < p.scalars; j++) fields.push([`k${j}`, 'f32']);
  return fields;
}

/*
 * One thread per output element (vectorizing is left to the memory system: consecutive threads
 * read consecutive addresses whenever the innermost dim is not broadcast). The output shape is
 * collapsed first (size-1 dims dropped, contiguous neighbours merged), so a same-shape op is 1-D
 * and needs no division; sizes and strides come from uniforms, so one pipeline serves every shape
 * of the same rank. Coordinates are peeled innermost first, once for all inputs.
 */
const mapSource = memoSource('map', (p: MapSourceParams) => {
  const decls = p.dtypes.map((dt, i) => input(NAMES[i]!, i, dt)).join('\n');
  const coords: string[] = [];
  if (p.rank === 1) coords.push('  let c0 = gi;');
  else {
    coords.push('  var r = gi;');
    for (let d = p.rank - 1; d > 0; d--) coords.push(`  let c${d} = r % u.d${d}; r = r / u.d${d};`);
    coords.push('  let c0 = r;');
  }
  const offset = (i: number) => Array.from({ length: p.rank }, (_, d) => `c${d} * u.s${NAMES[i]}${d}`).join(' + ');
  const loads = p.dtypes.map((_, i) => `  let ${NAMES[i]} = ld_${NAMES[i]}(${offset(i)});`).join('\n');
  const ks = Array.from({ length: p.scalars }, (_, j) => `  let k${j} = u.k${j};`).join('\n');
  return `${decls}
${output('out', p.dtypes.length)}
${uniformDecl(p.dtypes.length + 1, mapFields(p))}
${p.prelude}
${main1d(WG)}
  if (gi >= u.n) { return; }
${coords.join('\n')}
${loads}
${ks}
  out[gi] = ${p.accumulate ? 'out[gi] + ' : ''}(${p.expr});
}`;
  // The most frequent kernel: a flat key of its fields, cheaper than JSON with the expression and prelude escaped.
}, (p) => `${p.rank}|${p.dtypes.join()}|${p.scalars}|${p.accumulate ? 1 : 0}|${p.expr.length}:${p.expr}${p.prelude}`);

export function mapKernel(name: string, p: MapParams, flopsPerElement = 1): Kernel {
  const n = p.outShape.reduce((x, y) => x * y, 1);
  const c = collapseDims(p.outShape, p.inputs.map((i) => i.strides));
  const sp: MapSourceParams = { rank: c.shape.length, dtypes: p.inputs.map((i) => i.dtype), expr: p.expr, scalars: p.scalars?.length ?? 0, prelude: p.prelude ?? '', accumulate: p.accumulate ?? false };
  const fields = mapFields(sp);
  if (fields.length > MAX_UNIFORM_WORDS) throw new Error(`map kernel ${name}: rank ${sp.rank} with ${p.inputs.length} inputs needs ${fields.length} uniform words`);
  return {
    name,
    source: mapSource(sp),
    workgroups: grid(Math.ceil(n / WG)),
    flops: n * flopsPerElement,
    bytes: n * 4 * (p.inputs.length + 1 + (p.accumulate ? 1 : 0)),
    uniforms: packUniforms(fields, [n, ...c.shape, ...c.strides.flat(), ...(p.scalars ?? [])]),
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
