// Layout kernels: permutes (plain and tiled transpose) and slab copies for concat and split.
import { storageBytes, type DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import { broadcastIndex, input, main1d, output, strides } from './wgsl.js';

const WG = 256;

/**
 * Simplify a permute: drop size-1 dims and merge runs of input dims that stay adjacent and in
 * order, so [B,C,H,W] -> [0,2,3,1] becomes the batched transpose [B,C,HW] -> [0,2,1].
 */
export function collapsePermute(shape: readonly number[], perm: readonly number[]): { shape: number[]; perm: number[] } {
  const keepDims = shape.map((_, i) => i).filter((i) => shape[i] !== 1);
  const renum = new Map(keepDims.map((d, i) => [d, i]));
  const s = keepDims.map((d) => shape[d]!);
  const p = perm.filter((d) => shape[d] !== 1).map((d) => renum.get(d)!);
  // groups of output positions whose input dims are consecutive
  const groups: number[][] = [];
  for (const d of p) {
    const g = groups[groups.length - 1];
    if (g && g[g.length - 1]! + 1 === d) g.push(d);
    else groups.push([d]);
  }
  const byInput = [...groups].sort((a, b) => a[0]! - b[0]!);
  return {
    shape: byInput.map((g) => g.reduce((acc, d) => acc * s[d]!, 1)),
    perm: groups.map((g) => byInput.indexOf(g)),
  };
}

export interface PermuteParams {
  /** Collapsed input shape and permutation (see `collapsePermute`). */
  shape: number[];
  perm: number[];
  dtype: DType;
}

/** Whether the permute moves the innermost dim, which needs the tiled kernel to stay coalesced. */
function movesInnermost(p: PermuteParams): boolean {
  const r = p.shape.length;
  return r >= 2 && p.perm[r - 1] !== r - 1;
}

/*
 * Plain permute: one thread per output element, in output order, so writes are coalesced; the
 * source offset is the output coordinate dotted with the permuted input strides, all constants.
 * Used when the innermost dim stays innermost, so reads come in contiguous runs as well.
 */
const permuteSource = memoSource('permute', (p: PermuteParams) => {
  const outShape = p.perm.map((d) => p.shape[d]!);
  const st = strides(p.shape);
  const n = outShape.reduce((a, b) => a * b, 1);
  return `${input('x', 0, p.dtype)}
${output('out', 1)}
${main1d(WG)}
  if (gi >= ${n}u) { return; }
  out[gi] = ld_x(${broadcastIndex('gi', outShape, p.perm.map((d) => st[d]!))});
}`;
});

const T = 32;
const ROWS = 8;

/*
 * Tiled transpose for permutes that move the innermost dim. Let A be the input dim that becomes
 * innermost in the output and L the input's innermost dim. A workgroup of 32x8 threads owns a
 * 32x32 tile of (A, L) for one index of all the other dims ("batch"): it reads the tile with
 * consecutive threads along L (contiguous in the input), parks it in workgroup memory (rows padded
 * to 33 to spread banks), and writes it with consecutive threads along A (contiguous in the
 * output). Each thread moves 4 elements each way. Edge tiles are bounds-checked per element.
 */
const transposeSource = memoSource('transpose_tiled', (p: PermuteParams) => {
  const r = p.shape.length;
  const a = p.perm[r - 1]!;
  const j = p.perm.indexOf(r - 1);
  const outShape = p.perm.map((d) => p.shape[d]!);
  const inSt = strides(p.shape);
  const outSt = strides(outShape);
  const others = p.shape.map((_, d) => d).filter((d) => d !== a && d !== r - 1);
  const batchShape = others.map((d) => p.shape[d]!);
  const Sa = p.shape[a]!;
  const Sl = p.shape[r - 1]!;
  const tilesA = Math.ceil(Sa / T);
  const tilesL = Math.ceil(Sl / T);
  const total = tilesA * tilesL * batchShape.reduce((x, y) => x * y, 1);
  const inBase = broadcastIndex('b', batchShape, others.map((d) => inSt[d]!));
  const outBase = broadcastIndex('b', batchShape, others.map((d) => outSt[p.perm.indexOf(d)]!));
  return `${input('x', 0, p.dtype)}
${output('out', 1)}
var<workgroup> tile: array<f32, ${T * (T + 1)}>;
@compute @workgroup_size(${T}, ${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let wg = wid.x + wid.y * nwg.x;
  if (wg >= ${total}u) { return; }
  let tl = wg % ${tilesL}u;
  let ta = (wg / ${tilesL}u) % ${tilesA}u;
  let b = wg / ${tilesL * tilesA}u;
  let inBase = ${inBase};
  let outBase = ${outBase};
  for (var k = 0u; k < ${T}u; k += ${ROWS}u) {
    let ia = ta * ${T}u + lid.y + k;
    let il = tl * ${T}u + lid.x;
    if (ia < ${Sa}u && il < ${Sl}u) { tile[(lid.y + k) * ${T + 1}u + lid.x] = ld_x(inBase + ia * ${inSt[a]}u + il); }
  }
  workgroupBarrier();
  for (var k = 0u; k < ${T}u; k += ${ROWS}u) {
    let il = tl * ${T}u + lid.y + k;
    let ia = ta * ${T}u + lid.x;
    if (ia < ${Sa}u && il < ${Sl}u) { out[outBase + il * ${outSt[j]}u + ia] = tile[lid.x * ${T + 1}u + lid.y + k]; }
  }
}`;
});

/** The kernel for a permute of a (collapsed) shape; see `collapsePermute`. */
export function permuteKernel(p: PermuteParams): Kernel {
  const n = p.shape.reduce((a, b) => a * b, 1);
  const bytes = storageBytes(n, p.dtype) + 4 * n;
  if (!movesInnermost(p)) return { name: 'permute', source: permuteSource(p), workgroups: grid(Math.ceil(n / WG)), flops: 0, bytes };
  const r = p.shape.length;
  const tiles = Math.ceil(p.shape[p.perm[r - 1]!]! / T) * Math.ceil(p.shape[r - 1]! / T) * (n / (p.shape[p.perm[r - 1]!]! * p.shape[r - 1]!));
  return { name: 'transpose', source: transposeSource(p), workgroups: grid(tiles), flops: 0, bytes };
}

/** One piece of a concat or split along an axis; `dtype` null marks a piece with no tensor (zeros / skipped). */
export interface SlabPiece {
  size: number;
  dtype: DType | null;
}

export interface SlabParams {
  /** 'gather': pieces -> the whole (concat); 'scatter': the whole -> pieces (split). */
  dir: 'gather' | 'scatter';
  /** Product of the dims before the axis, and after it. */
  outer: number;
  inner: number;
  /** Extent of the whole tensor along the axis, and where this group of pieces starts. */
  total: number;
  start: number;
  pieces: SlabPiece[];
  /** Storage dtype of the whole tensor (read by 'scatter'). */
  dtype: DType;
}

/*
 * Concat and split as one dispatch per group of up to 7 pieces (the binding limit). The whole
 * tensor is [outer, total, inner]; the group covers axis range [start, start + Σ sizes), which is
 * `outer` contiguous runs of W = Σ sizes * inner elements. One thread per element of that region,
 * in the whole tensor's order: the offset r within a run picks the piece by constant bounds, and
 * the piece offset is o * size * inner + r - its start. Consecutive threads touch consecutive
 * addresses on both sides except at piece borders. Gather writes 0 for a piece with no tensor
 * (a split output that got no gradient); scatter skips it.
 */
const slabSource = memoSource('slab', (p: SlabParams) => {
  const W = p.pieces.reduce((a, q) => a + q.size, 0) * p.inner;
  const n = p.outer * W;
  const decls: string[] = [];
  const present = p.pieces.filter((q) => q.dtype);
  if (p.dir === 'gather') {
    present.forEach((q, i) => decls.push(input(`p${i}`, i, q.dtype!)));
    decls.push(output('whole', present.length));
  } else {
    decls.push(input('whole', 0, p.dtype));
    present.forEach((_, i) => decls.push(output(`p${i}`, i + 1)));
  }
  const branches: string[] = [];
  let lo = 0;
  let bi = 0;
  for (const q of p.pieces) {
    const hi = lo + q.size * p.inner;
    const at = `o * ${q.size * p.inner}u + r - ${lo}u`;
    let body = '';
    if (q.dtype) {
      body = p.dir === 'gather' ? `v = ld_p${bi}(${at});` : `p${bi}[${at}] = v;`;
      bi++;
    }
    branches.push(`if (r < ${hi}u) { ${body} }`);
    lo = hi;
  }
  const wholeAt = `o * ${p.total * p.inner}u + ${p.start * p.inner}u + r`;
  return `${decls.join('\n')}
${main1d(WG)}
  if (gi >= ${n}u) { return; }
  let o = gi / ${W}u;
  let r = gi - o * ${W}u;
${p.dir === 'gather' ? `  var v = 0.0;\n  ${branches.join(' else ')}\n  whole[${wholeAt}] = v;` : `  let v = ld_whole(${wholeAt});\n  ${branches.join(' else ')}`}
}`;
});

/** Most pieces one slab dispatch binds: 8 storage bindings, one of them the whole tensor. */
export const MAX_SLAB_PIECES = 7;

export function slabKernel(p: SlabParams): Kernel {
  const span = p.pieces.reduce((a, q) => a + q.size, 0) * p.inner * p.outer;
  const presentBytes = p.pieces.reduce((a, q) => a + (q.dtype ? storageBytes(q.size * p.inner * p.outer, q.dtype) : 0), 0);
  const presentN = p.pieces.reduce((a, q) => a + (q.dtype ? q.size * p.inner * p.outer : 0), 0);
  const bytes = p.dir === 'gather' ? presentBytes + 4 * span : storageBytes(span, p.dtype) + 4 * presentN;
  return { name: p.dir === 'gather' ? 'concat' : 'split', source: slabSource(p), workgroups: grid(Math.ceil(span / WG)), flops: 0, bytes };
}
