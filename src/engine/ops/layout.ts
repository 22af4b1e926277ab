// Layout ops: permute/transpose, concat and split along an axis — index-mapped copies with backward.
import { noGrad, record, type BackwardRule } from '../autograd.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import { broadcastIndex, input, main1d, output, strides } from '../kernels/wgsl.js';
import type { DType } from '../dtype.js';
import { zeros, type Tensor } from '../tensor.js';
import { check, emptyLike, launch } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    permute: { perm: number[] };
    concat: { axis: number; sizes: number[] };
    split: { axis: number; sizes: number[]; shape: readonly number[] };
  }
}

interface CopyParams {
  shape: number[];
  srcStrides: number[];
  srcOffset: number;
  dstStrides: number[];
  dstOffset: number;
  dtype: DType;
}

const WG = 256;

/*
 * One thread per element of the copied region; source and destination offsets come from the
 * thread's coordinates with constant strides, so the same kernel is a permute, a slice read or a
 * slice write. Threads are ordered along the destination when that is contiguous (permute), which
 * keeps the writes coalesced.
 */
const copySource = memoSource('copy', (p: CopyParams) => {
  const n = p.shape.reduce((a, b) => a * b, 1);
  return `${input('x', 0, p.dtype)}\n${output('out', 1)}\n${main1d(WG)}
  if (gi >= ${n}u) { return; }
  out[${p.dstOffset}u + ${broadcastIndex('gi', p.shape, p.dstStrides)}] = ld_x(${p.srcOffset}u + ${broadcastIndex('gi', p.shape, p.srcStrides)});
}`;
});

function copyKernel(name: string, p: CopyParams): Kernel {
  const n = p.shape.reduce((a, b) => a * b, 1);
  return { name, source: copySource(p), workgroups: grid(Math.ceil(n / WG)), flops: 0, bytes: 8 * n };
}

/** Reorder dimensions: out.shape[d] = x.shape[perm[d]]. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  check(perm.length === x.rank && [...perm].sort().every((p, i) => p === i), () => `permute: [${perm}] is not a permutation of ${x.rank} dims`);
  const outShape = perm.map((p) => x.shape[p]!);
  const out = emptyLike(x, outShape);
  const st = strides(x.shape);
  launch(copyKernel('permute', { shape: outShape, srcStrides: perm.map((p) => st[p]!), srcOffset: 0, dstStrides: strides(outShape), dstOffset: 0, dtype: x.dtype }), [x], [out]);
  record('permute', [x], [out], { perm: [...perm] });
  return out;
}

/** Swap two dimensions. */
export function transpose(x: Tensor, a: number, b: number): Tensor {
  const perm = x.shape.map((_, i) => i);
  [perm[a], perm[b]] = [perm[b]!, perm[a]!];
  return permute(x, perm);
}

const permuteBackward: BackwardRule<'permute'> = ({ perm }, [g]) => {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return [permute(g!, inv)];
};

/** Write `src` into `dst` at `start` along `axis`. */
function writeSlice(dst: Tensor, src: Tensor, axis: number, start: number): void {
  const ds = strides(dst.shape);
  launch(copyKernel('slice_write', { shape: [...src.shape], srcStrides: strides(src.shape), srcOffset: 0, dstStrides: ds, dstOffset: start * ds[axis]!, dtype: src.dtype }), [src], [dst]);
}

/** Read the slice of `x` of `size` at `start` along `axis`. */
function readSlice(x: Tensor, axis: number, start: number, size: number): Tensor {
  const shape = x.shape.map((d, i) => (i === axis ? size : d));
  const out = emptyLike(x, shape);
  const xs = strides(x.shape);
  launch(copyKernel('slice_read', { shape, srcStrides: xs, srcOffset: start * xs[axis]!, dstStrides: strides(shape), dstOffset: 0, dtype: x.dtype }), [x], [out]);
  return out;
}

/** Concatenate along `axis`; all other dimensions must agree. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  const x0 = xs[0]!;
  const ax = axis < 0 ? axis + x0.rank : axis;
  for (const x of xs) check(x.rank === x0.rank && x.shape.every((d, i) => i === ax || d === x0.shape[i]), () => `concat: shapes ${xs.map((t) => `[${t.shape}]`).join(', ')} differ off axis ${ax}`);
  const sizes = xs.map((x) => x.shape[ax]!);
  const out = emptyLike(x0, x0.shape.map((d, i) => (i === ax ? sizes.reduce((a, b) => a + b, 0) : d)));
  let start = 0;
  xs.forEach((x, i) => {
    writeSlice(out, x, ax, start);
    start += sizes[i]!;
  });
  record('concat', xs, [out], { axis: ax, sizes });
  return out;
}

const concatBackward: BackwardRule<'concat'> = ({ axis, sizes }, [g], needs) => {
  let start = 0;
  return sizes.map((s, i) => {
    const piece = needs[i] ? readSlice(g!, axis, start, s) : null;
    start += s;
    return piece;
  });
};

/** Split along `axis` into pieces of the given sizes. */
export function split(x: Tensor, sizes: readonly number[], axis: number): Tensor[] {
  const ax = axis < 0 ? axis + x.rank : axis;
  check(sizes.reduce((a, b) => a + b, 0) === x.shape[ax], () => `split: sizes [${sizes}] do not add up to ${x.shape[ax]} along axis ${ax} of [${x.shape}]`);
  let start = 0;
  const outs = sizes.map((s) => {
    const o = readSlice(x, ax, start, s);
    start += s;
    return o;
  });
  record('split', [x], outs, { axis: ax, sizes: [...sizes], shape: x.shape });
  return outs;
}

const splitBackward: BackwardRule<'split'> = ({ axis, sizes, shape }, gs) =>
  noGrad(() => {
    const dx = zeros(gs.find((g) => g)!.backend, shape);
    let start = 0;
    sizes.forEach((s, i) => {
      if (gs[i]) writeSlice(dx, gs[i]!, axis, start);
      start += s;
    });
    return [dx];
  });

export const layoutRules = { permute: permuteBackward, concat: concatBackward, split: splitBackward };
