// Layout ops: permute/transpose, concat and split along an axis — index-mapped copies with backward.
import { record, type BackwardRule } from '../autograd.js';
import { collapsePermute, MAX_SLAB_PIECES, permuteKernel, slabKernel, type SlabPiece } from '../kernels/layout.js';
import { Tensor } from '../tensor.js';
import { check, emptyLike, launch } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    permute: { perm: number[] };
    concat: { axis: number; sizes: number[] };
    split: { axis: number; sizes: number[]; shape: readonly number[] };
  }
}

/**
 * Reorder dimensions: out.shape[d] = x.shape[perm[d]], plus `residual` (shaped as out) added in the
 * same pass when given (a transformer's NHWC -> NCHW output and its skip: no separate add). The
 * residual's gradient is the output's.
 */
export function permute(x: Tensor, perm: readonly number[], residual?: Tensor): Tensor {
  check(perm.length === x.rank && [...perm].sort((a, b) => a - b).every((p, i) => p === i), () => `permute: [${perm}] is not a permutation of ${x.rank} dims`);
  const outShape = perm.map((p) => x.shape[p]!);
  check(!residual || (residual.rank === outShape.length && residual.shape.every((d, i) => d === outShape[i])), () => `permute: residual [${residual!.shape.join(', ')}] is not the output's shape [${outShape.join(', ')}]`);
  const out = emptyLike(x, outShape);
  launch(permuteKernel({ ...collapsePermute(x.shape, perm), dtype: x.dtype, ...(residual ? { residual: residual.dtype } : {}) }), residual ? [x, residual] : [x], [out]);
  record('permute', [x, residual ?? null], [out], { perm: [...perm] });
  return out;
}

/** Swap two dimensions (negative axes count from the end). */
export function transpose(x: Tensor, a: number, b: number): Tensor {
  const perm = x.shape.map((_, i) => i);
  const i = axisOf(x, a, 'transpose');
  const j = axisOf(x, b, 'transpose');
  [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  return permute(x, perm);
}

// x: [...], out: [...perm] (+ residual), g: like out -> dx = permute(g, perm⁻¹), dresidual = g
const permuteBackward: BackwardRule<'permute'> = ({ perm }, [g], needs) => {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return [needs[0] ? permute(g!, inv) : null, needs[1] ? g! : null];
};

function axisOf(x: Tensor, axis: number, op: string): number {
  const ax = axis < 0 ? axis + x.rank : axis;
  check(Number.isInteger(ax) && ax >= 0 && ax < x.rank, () => `${op}: axis ${axis} out of range for [${x.shape}]`);
  return ax;
}

/**
 * Copy between `whole` ([outer, Σ sizes, inner] around `axis`) and its pieces, in as few dispatches
 * as the binding limit allows. A null piece is zeros when gathering and skipped when scattering.
 */
function slabs(dir: 'gather' | 'scatter', whole: Tensor, pieces: readonly (Tensor | null)[], sizes: readonly number[], axis: number): void {
  const outer = whole.shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = whole.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const total = whole.shape[axis]!;
  let i = 0;
  let start = 0;
  while (i < pieces.length) {
    const group: SlabPiece[] = [];
    const bound: Tensor[] = [];
    let groupStart = start;
    for (; i < pieces.length && bound.length < MAX_SLAB_PIECES; i++) {
      const t = pieces[i];
      if (!t && dir === 'scatter' && group.length === 0) {
        groupStart += sizes[i]!; // leading skipped pieces cost nothing
      } else {
        group.push({ size: sizes[i]!, dtype: t ? t.dtype : null });
        if (t) bound.push(t);
      }
      start += sizes[i]!;
    }
    if (dir === 'scatter') while (group.length && !group[group.length - 1]!.dtype) group.pop(); // nor do trailing ones
    if (dir === 'scatter' && bound.length === 0) continue;
    const k = slabKernel({ dir, outer, inner, total, start: groupStart, pieces: group, dtype: whole.dtype });
    if (dir === 'gather') launch(k, bound, [whole]);
    else launch(k, [whole], bound);
  }
}

/** Concatenate along `axis` (negative counts from the end); all other dimensions must agree. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  check(xs.length > 0, () => 'concat: no tensors');
  const x0 = xs[0]!;
  const ax = axisOf(x0, axis, 'concat');
  for (const x of xs) check(x.rank === x0.rank && x.shape.every((d, i) => i === ax || d === x0.shape[i]), () => `concat: shapes ${xs.map((t) => `[${t.shape}]`).join(', ')} differ off axis ${ax}`);
  const sizes = xs.map((x) => x.shape[ax]!);
  const out = emptyLike(x0, x0.shape.map((d, i) => (i === ax ? sizes.reduce((a, b) => a + b, 0) : d)));
  slabs('gather', out, xs, sizes, ax);
  record('concat', xs, [out], { axis: ax, sizes });
  return out;
}

// xs[i]: [..., sizes[i], ...], g: [..., Σ sizes, ...] -> dxs[i] = the slice of g, only where needed
const concatBackward: BackwardRule<'concat'> = ({ axis, sizes }, [g], needs) => {
  const views = sliceViews(g!, axis, sizes, needs);
  if (views) return views;
  const dxs = sizes.map((s, i) => (needs[i] ? emptyLike(g!, g!.shape.map((d, k) => (k === axis ? s : d))) : null));
  slabs('scatter', g!, dxs, sizes, axis);
  return dxs;
};

/**
 * The slices of `t` along `axis` as views of its storage (no copy), where they are contiguous (no
 * dim before `axis` above 1: one image's channels) and each needed one starts on a 256-byte
 * binding boundary; else null. Gradients are never written in place, so a view is as good as a copy.
 */
function sliceViews(t: Tensor, axis: number, sizes: readonly number[], needs: readonly boolean[]): (Tensor | null)[] | null {
  if (t.dtype !== 'f32' || t.shape.slice(0, axis).some((d) => d !== 1)) return null;
  const inner = t.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const starts = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
  if (sizes.some((_, i) => needs[i] && (t.offset + starts[i]! * inner * 4) % 256 !== 0)) return null;
  return sizes.map((s, i) => (needs[i] ? new Tensor(t.backend, t.storage, t.shape.map((d, k) => (k === axis ? s : d)), 'f32', t.offset + starts[i]! * inner * 4) : null));
}

/** Split along `axis` (negative counts from the end) into pieces of the given sizes: one node, several outputs. */
export function split(x: Tensor, sizes: readonly number[], axis: number): Tensor[] {
  const ax = axisOf(x, axis, 'split');
  check(sizes.every((s) => Number.isInteger(s) && s > 0) && sizes.reduce((a, b) => a + b, 0) === x.shape[ax], () => `split: sizes [${sizes}] do not add up to ${x.shape[ax]} along axis ${ax} of [${x.shape}]`);
  const outs = sizes.map((s) => emptyLike(x, x.shape.map((d, i) => (i === ax ? s : d))));
  slabs('scatter', x, outs, sizes, ax);
  record('split', [x], outs, { axis: ax, sizes: [...sizes], shape: x.shape });
  return outs;
}

// x: [..., Σ sizes, ...], gs[i]: [..., sizes[i], ...] or null (unused piece: zeros) -> dx = concat(gs)
const splitBackward: BackwardRule<'split'> = ({ axis, sizes, shape }, gs) => {
  const dx = emptyLike(gs.find((g) => g)!, shape);
  slabs('gather', dx, sizes.map((_, i) => gs[i] ?? null), sizes, axis);
  return [dx];
};

export const layoutRules = { permute: permuteBackward, concat: concatBackward, split: splitBackward };
