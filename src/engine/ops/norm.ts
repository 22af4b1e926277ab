// Group norm and layer norm, forward and backward side by side (one saved-statistics scheme for both).
import { noGrad, record, withPrior, type BackwardRule } from '../autograd.js';
import {
  CHANNEL_MAJOR_MIN_S,
  columnChunks,
  lanesPerRow,
  NORM_WG,
  normDwChannelKernel,
  normDwColumnKernel,
  normDxKernel,
  normForwardKernel,
  type NormActivation,
  type NormLayout,
  type NormParams,
} from '../kernels/norm.js';
import { reduceOn } from './reduce.js';
import { subgroupsFor } from '../subgroups.js';
import { empty, type Tensor } from '../tensor.js';
import { check, emptyLike, launch, sameShape } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    norm: { x: Tensor; w: Tensor | null; b: Tensor | null; stats: Tensor; p: NormParams; layout: NormLayout };
  }
}

/** An optional affine parameter: absent as undefined or null. */
type Affine = Tensor | null | undefined;

// x [..] → y [..] (same shape), stats [rows, 2] = (mean, 1/std) per normalized row.
// Saved: x, the weight (for dx) and stats; the bias only with an activation (backward recomputes
// the pre-activation from x, stats, weight and bias instead of keeping it).
function normOp(name: string, x: Tensor, w: Affine, b: Affine, p: NormParams, layout: NormLayout): Tensor {
  check(x.size > 0, () => `${name}: empty input [${x.shape}]`);
  for (const [what, t] of [['weight', w], ['bias', b]] as const) {
    check(!t || t.size === layout.C, () => `${name}: ${what} of shape [${t!.shape}] for ${layout.C} channels`);
  }
  const y = emptyLike(x);
  const stats = empty(x.backend, [p.rows, 2]);
  launch(normForwardKernel(name, p, layout.C, subgroupsFor(x.backend, lanesPerRow(p.E))), [x, ...(w ? [w] : []), ...(b ? [b] : [])], [y, stats]);
  const bSaved = p.act ? (b ?? null) : null;
  const held = [x, w, bSaved, stats].filter((t): t is Tensor => !!t);
  record('norm', [x, w ?? null, b ?? null], [y], { x, w: w ?? null, b: bSaved, stats, p, layout }, held);
  stats.dispose();
  return y;
}

/** Options of groupNorm. */
export interface GroupNormOptions {
  /** Apply this activation to the output in the same kernel (SD's GroupNorm → SiLU); backward goes through it. */
  activation?: NormActivation;
}

/**
 * GroupNorm over x [N, C, ...spatial] (any spatial rank, including none) with `groups` groups of
 * C/groups channels; weight and bias [C], f32 or f16 storage. Statistics are per (n, group).
 * With `activation: 'silu'`, y = silu(groupNorm(x)) in one dispatch forward and none extra backward.
 */
export function groupNorm(x: Tensor, groups: number, weight: Affine, bias: Affine, eps: number, opts: GroupNormOptions = {}): Tensor {
  check(x.rank >= 2, () => `groupNorm: input [${x.shape}] needs at least [N, C]`);
  const [N, C] = x.shape as [number, number];
  check(Number.isInteger(groups) && groups > 0 && C % groups === 0, () => `groupNorm: ${C} channels of [${x.shape}] do not split into ${groups} groups`);
  const S = x.size / (N * C);
  const cg = C / groups;
  const w = weight?.dtype ?? null;
  const b = bias?.dtype ?? null;
  const act = opts.activation;
  const p: NormParams = { rows: N * groups, E: cg * S, eps, group: { G: groups, cg, S }, w, b, ...(act ? { act } : {}) };
  const layout: NormLayout = { outer: N, C, S, rows: p.rows, group: { G: groups, cg }, ...(act ? { act: { fn: act, w, b } } : {}) };
  return normOp(act ? `group_norm_${act}` : 'group_norm', x, weight, bias, p, layout);
}

/** LayerNorm over the last dimension of x [..., C]; weight and bias [C], f32 or f16 storage. */
export function layerNorm(x: Tensor, weight: Affine, bias: Affine, eps = 1e-5): Tensor {
  check(x.rank >= 1, () => 'layerNorm: a scalar has no last dimension');
  const C = x.shape[x.rank - 1]!;
  const R = x.size / C;
  const p: NormParams = { rows: R, E: C, eps, group: null, w: weight?.dtype ?? null, b: bias?.dtype ?? null };
  return normOp('layer_norm', x, weight, bias, p, { outer: R, C, S: 1, rows: R, group: null });
}

// y = act(z), z = x̂·w + b with x̂ = (x − mean)·rstd, per row of E elements; gz = dy·act'(z)
// (just dy without an activation; the kernels recompute z from x, the stats, w and b):
//   dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) with dx̂ = gz·w      [same shape as x]
//   dw[c] = Σ gz·x̂,  db[c] = Σ gz over the elements of channel c    [C]
const normBackward: BackwardRule<'norm'> = ({ x, w, b, stats, p, layout }, [g], needs, prior) =>
  noGrad(() => {
    const affine = [...(w ? [w] : []), ...(b ? [b] : [])];
    let dx: Tensor | null = null;
    if (needs[0]) {
      // x's gradient from its other uses (a residual stream's skip), added as dx is written.
      const pr = prior?.[0];
      const fold = !!pr && pr.dtype === 'f32' && sameShape(pr.shape, x.shape);
      dx = emptyLike(x);
      launch(normDxKernel(p, layout.C, fold, subgroupsFor(x.backend, lanesPerRow(p.E))), [x, g!, stats, ...affine, ...(fold ? [pr] : [])], [dx]);
      if (fold) withPrior(dx);
    }
    const [dw, db] = needs[1] || needs[2] ? paramGrads(x, g!, stats, layout, p.act ? affine : [], needs[1]!, needs[2]!) : [null, null];
    return [dx, dw, db];
  });

/** dweight and dbias [C], each only if wanted (the kernel computes both sums in one pass). affine: w, b as the activation's recompute binds them. */
function paramGrads(x: Tensor, g: Tensor, stats: Tensor, L: NormLayout, affine: Tensor[], wantW: boolean, wantB: boolean): [Tensor | null, Tensor | null] {
  const { C, S } = L;
  if (L.S >= CHANNEL_MAJOR_MIN_S) {
    const dw = empty(x.backend, [C]);
    const db = empty(x.backend, [C]);
    launch(normDwChannelKernel(L, subgroupsFor(x.backend, NORM_WG)), [x, g, stats, ...affine], [dw, db]);
    return [wantW ? dw : null, wantB ? db : null];
  }
  const { chunks } = columnChunks(L);
  const pw = empty(x.backend, [chunks, C, S]);
  const pb = empty(x.backend, [chunks, C, S]);
  launch(normDwColumnKernel(L), [x, g, stats, ...affine], [pw, pb]);
  const finish = (part: Tensor): Tensor => {
    if (chunks === 1 && S === 1) return part.reshape([C]);
    const out = empty(x.backend, [C]);
    launch(reduceOn(x.backend, { inShape: [chunks, C, S], axes: [0, 2], dtype: 'f32', scale: 1 }), [part], [out]);
    return out;
  };
  return [wantW ? finish(pw) : null, wantB ? finish(pb) : null];
}

export const normRules = { norm: normBackward };
