// Group norm, layer norm, GEGLU and the sinusoidal timestep embedding, forward and backward side by side.
import { noGrad, record, type BackwardRule } from '../autograd.js';
import type { Backend } from '../backend.js';
import { grid, memoSource } from '../kernel.js';
import { ACTIVATIONS } from '../kernels/elementwise.js';
import { normDwKernel, normDxKernel, normForwardKernel, type NormParams, type NormParamGradParams } from '../kernels/norm.js';
import { f, input, main1d, output } from '../kernels/wgsl.js';
import { empty, tensor, type Tensor } from '../tensor.js';
import { check, emptyLike, launch } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    norm: { x: Tensor; w: Tensor | null; stats: Tensor; p: NormParams; pg: NormParamGradParams };
    geglu: { x: Tensor };
  }
}

function normOp(name: string, x: Tensor, w: Tensor | undefined, b: Tensor | undefined, p: NormParams, pg: NormParamGradParams): Tensor {
  const y = emptyLike(x);
  const stats = empty(x.backend, [p.rows, 2]);
  launch(normForwardKernel(name, p), [x, ...(w ? [w] : []), ...(b ? [b] : [])], [y, stats]);
  record('norm', [x, w ?? null, b ?? null], [y], { x, w: w ?? null, stats, p, pg }, w ? [x, w, stats] : [x, stats]);
  stats.dispose();
  return y;
}

/**
 * GroupNorm over x [N, C, ...spatial] with `groups` groups; weight and bias [C].
 * Saves the input and per-(n, group) mean and 1/std.
 */
export function groupNorm(x: Tensor, groups: number, weight: Tensor | undefined, bias: Tensor | undefined, eps: number): Tensor {
  const [N, C] = x.shape as [number, number];
  check(x.rank >= 2 && C % groups === 0, () => `groupNorm: ${C} channels of [${x.shape}] do not split into ${groups} groups`);
  const S = x.size / (N * C);
  const cg = C / groups;
  const p: NormParams = { rows: N * groups, E: cg * S, eps, chan: `(r % ${groups}u) * ${cg}u + e / ${S}u`, w: weight?.dtype ?? null, b: bias?.dtype ?? null };
  const pg: NormParamGradParams = { channels: C, count: N * S, index: `((t / ${S}u) * ${C}u + c) * ${S}u + t % ${S}u`, row: `(t / ${S}u) * ${groups}u + c / ${cg}u` };
  return normOp('group_norm', x, weight, bias, p, pg);
}

/** LayerNorm over the last dimension of x [..., C]; weight and bias [C]. */
export function layerNorm(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps = 1e-5): Tensor {
  const C = x.shape[x.rank - 1]!;
  const R = x.size / C;
  const p: NormParams = { rows: R, E: C, eps, chan: 'e', w: weight?.dtype ?? null, b: bias?.dtype ?? null };
  const pg: NormParamGradParams = { channels: C, count: R, index: `t * ${C}u + c`, row: 't' };
  return normOp('layer_norm', x, weight, bias, p, pg);
}

// y = x̂·w + b with x̂ = (x − mean)·rstd:  dx from the row reductions;  dw = Σ dy·x̂;  db = Σ dy.
const normBackward: BackwardRule<'norm'> = ({ x, w, stats, p, pg }, [g], needs) =>
  noGrad(() => {
    let dx: Tensor | null = null;
    if (needs[0]) {
      dx = emptyLike(x);
      launch(normDxKernel(p), [x, g!, stats, ...(w ? [w] : [])], [dx]);
    }
    let dw: Tensor | null = null;
    let db: Tensor | null = null;
    if (needs[1] || needs[2]) {
      dw = empty(x.backend, [pg.channels]);
      db = empty(x.backend, [pg.channels]);
      launch(normDwKernel(pg), [x, g!, stats], [dw, db]);
    }
    return [dx, needs[1] ? dw : null, needs[2] ? db : null];
  });

const WG = 256;

/* GEGLU: one thread per output; value is the first half of the last dim, gate the second. */
const gegluSource = memoSource('geglu', (p: { rows: number; F: number; back: boolean }) => {
  const n = p.rows * p.F;
  const head = `${ACTIVATIONS}\n${main1d(WG)}\n  if (gi >= ${n}u) { return; }\n  let r = gi / ${p.F}u; let j = gi % ${p.F}u;\n  let val = ld_x(r * ${2 * p.F}u + j); let gate = ld_x(r * ${2 * p.F}u + ${p.F}u + j);`;
  return p.back
    ? `${input('x', 0)}\n${input('g', 1)}\n${output('dx', 2)}\n${head}\n  let gv = ld_g(gi);\n  dx[r * ${2 * p.F}u + j] = gv * gelu(gate);\n  dx[r * ${2 * p.F}u + ${p.F}u + j] = gv * val * gelu_grad(gate);\n}`
    : `${input('x', 0)}\n${output('y', 1)}\n${head}\n  y[gi] = val * gelu(gate);\n}`;
});

/** diffusers' GEGLU activation: x [..., 2F] → value · gelu(gate), [..., F] (exact erf GELU). */
export function geglu(x: Tensor): Tensor {
  const F2 = x.shape[x.rank - 1]!;
  check(F2 % 2 === 0, () => `geglu: last dimension ${F2} is odd`);
  const F = F2 / 2;
  const rows = x.size / F2;
  const y = emptyLike(x, [...x.shape.slice(0, -1), F]);
  launch({ name: 'geglu', source: gegluSource({ rows, F, back: false }), workgroups: grid(Math.ceil((rows * F) / WG)), flops: 25 * rows * F, bytes: 12 * rows * F }, [x], [y]);
  record('geglu', [x], [y], { x }, [x]);
  return y;
}

const gegluBackward: BackwardRule<'geglu'> = ({ x }, [g]) => {
  const F = x.shape[x.rank - 1]! / 2;
  const rows = x.size / (2 * F);
  const dx = emptyLike(x);
  launch({ name: 'geglu_back', source: gegluSource({ rows, F, back: true }), workgroups: grid(Math.ceil((rows * F) / WG)), flops: 45 * rows * F, bytes: 20 * rows * F }, [x, g!], [dx]);
  return [dx];
};

export interface TimestepEmbeddingOptions {
  /** Put cosines first (SD 1.x: true). */
  flipSinToCos?: boolean;
  /** diffusers' freq_shift (SD 1.x: 0). */
  downscaleFreqShift?: number;
}

/* One thread per output: frequency exp(-ln(10000)·i/(half − shift)), then cos/sin of t·freq. */
const tembSource = memoSource('temb', (p: { B: number; dim: number; flip: boolean; shift: number }) => {
  const half = p.dim / 2;
  return `${input('t', 0)}\n${output('y', 1)}\n${main1d(WG)}\n  if (gi >= ${p.B * p.dim}u) { return; }
  let b = gi / ${p.dim}u; let j = gi % ${p.dim}u;
  let i = j % ${half}u;
  let arg = ld_t(b) * exp(${f(-Math.log(10000))} * f32(i) / ${f(half - p.shift)});
  let first = j < ${half}u;
  y[gi] = select(${p.flip ? 'sin(arg), cos(arg)' : 'cos(arg), sin(arg)'}, first);
}`;
});

/** Sinusoidal embedding of integer timesteps → [B, dim], as diffusers' get_timestep_embedding. */
export function timestepEmbedding(backend: Backend, timesteps: readonly number[], dim: number, o: TimestepEmbeddingOptions = {}): Tensor {
  check(dim % 2 === 0, () => `timestepEmbedding: dim ${dim} must be even`);
  const t = tensor(backend, timesteps, [timesteps.length]);
  const y = empty(backend, [timesteps.length, dim]);
  const B = timesteps.length;
  launch({ name: 'timestep_embedding', source: tembSource({ B, dim, flip: o.flipSinToCos ?? true, shift: o.downscaleFreqShift ?? 0 }), workgroups: grid(Math.ceil((B * dim) / WG)), flops: 20 * B * dim, bytes: 4 * B * dim }, [t], [y]);
  t.dispose();
  return y;
}

export const normRules = { norm: normBackward, geglu: gegluBackward };
