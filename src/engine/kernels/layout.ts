// Layout kernels: permutes (plain and tiled transpose) and slab copies for concat and split.
import { storageBytes, type DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import { input, main1d, output, packUniforms, strides, uniformDecl, type UniformField } from './wgsl.js';

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
  /** Storage dtype of a tensor shaped like the output added as it is written (a residual), or none. */
  residual?: DType;
}

/** The residual's binding (after x) and the output's index, and the term the store adds. */
const withResidual = (res: DType | undefined) => ({ decl: res ? input('res', 1, res) : '', out: res ? 2 : 1, add: (i: string) => (res ? ` + ld_res(${i})` : '') });

/** Whether the permute moves the innermost dim, which needs the tiled kernel to stay coalesced. */
function movesInnermost(p: PermuteParams): boolean {
  const r = p.shape.length;
  return r >= 2 && p.perm[r - 1] !== r - 1;
}

/** Uniform fields of the plain permute of rank r: element count, output dims, input strides per output dim. */
function permuteFields(r: number): UniformField[] {
  const f: UniformField[] = [['n', 'u32']];
  for (let d = 0; d < r; d++) f.push([`d${d}`, 'u32']);
  for (let d = 0; d < r; d++) f.push([`s${d}`, 'u32']);
  return f;
}

/*
 * Plain permute: one thread per output element, in output order, so writes are coalesced; the
 * source offset is the output coordinate (peeled innermost first) dotted with the permuted input
 * strides, all from uniforms: one pipeline per rank and dtype. Used when the innermost dim stays
 * innermost, so reads come in contiguous runs as well.
 */
const permuteSource = memoSource('permute', (p: { rank: number; dtype: DType; residual?: DType }) => {
  const coords = ['  var rem = gi;', '  var off = 0u;'];
  for (let d = p.rank - 1; d > 0; d--) coords.push(`  off += (rem % u.d${d}) * u.s${d}; rem = rem / u.d${d};`);
  coords.push('  off += rem * u.s0;');
  const r = withResidual(p.residual);
  return `${input('x', 0, p.dtype)}
${r.decl}
${output('out', r.out)}
${uniformDecl(r.out + 1, permuteFields(p.rank))}
${main1d(WG)}
  if (gi >= u.n) { return; }
${coords.join('\n')}
  out[gi] = ld_x(off)${r.add('gi')};
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
const transposeSource = memoSource('transpose_tiled', (p: { perm: number[]; dtype: DType; residual?: DType }) => {
  const r = p.perm.length;
  const res = withResidual(p.residual);
  const others = transposeOthers(p.perm);
  // batch index b -> offsets: peel the other dims innermost first
  const peel = ['  var rem = b;', '  var inBase = 0u;', '  var outBase = 0u;'];
  for (let i = others.length - 1; i >= 0; i--) {
    const c = i === 0 ? 'rem' : `(rem % u.bd${i})`;
    peel.push(`  { let c = ${c}; inBase += c * u.bi${i}; outBase += c * u.bo${i}; ${i === 0 ? '' : `rem = rem / u.bd${i};`} }`);
  }
  return `${input('x', 0, p.dtype)}
${res.decl}
${output('out', res.out)}
${uniformDecl(res.out + 1, transposeFields(r))}
var<workgroup> tile: array<f32, ${T * (T + 1)}>;
@compute @workgroup_size(${T}, ${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let wg = wid.x + wid.y * nwg.x;
  if (wg >= u.total) { return; }
  let tl = wg % u.tilesL;
  let ta = (wg / u.tilesL) % u.tilesA;
  let b = wg / (u.tilesL * u.tilesA);
${peel.join('\n')}
  for (var k = 0u; k < ${T}u; k += ${ROWS}u) {
    let ia = ta * ${T}u + lid.y + k;
    let il = tl * ${T}u + lid.x;
    if (ia < u.Sa && il < u.Sl) { tile[(lid.y + k) * ${T + 1}u + lid.x] = ld_x(inBase + ia * u.inA + il); }
  }
  workgroupBarrier();
  for (var k = 0u; k < ${T}u; k += ${ROWS}u) {
    let il = tl * ${T}u + lid.y + k;
    let ia = ta * ${T}u + lid.x;
    if (ia < u.Sa && il < u.Sl) { let o = outBase + il * u.outJ + ia; out[o] = tile[lid.x * ${T + 1}u + lid.y + k]${res.add('o')}; }
  }
}`;
});

/** Input dims of a moving-innermost permute other than A (the new innermost) and L (the old one): the batch. */
const transposeOthers = (perm: readonly number[]) => perm.map((_, d) => d).filter((d) => d !== perm[perm.length - 1] && d !== perm.length - 1);

/** Uniform fields of the tiled transpose of rank r: tiling, the (A, L) extents and strides, the batch dims' sizes and strides. */
function transposeFields(r: number): UniformField[] {
  const f: UniformField[] = [['total', 'u32'], ['tilesA', 'u32'], ['tilesL', 'u32'], ['Sa', 'u32'], ['Sl', 'u32'], ['inA', 'u32'], ['outJ', 'u32']];
  for (let i = 0; i < r - 2; i++) f.push([`bd${i}`, 'u32'], [`bi${i}`, 'u32'], [`bo${i}`, 'u32']);
  return f;
}

function transposeUniforms(p: PermuteParams): { words: Uint32Array; tiles: number } {
  const r = p.shape.length;
  const a = p.perm[r - 1]!;
  const j = p.perm.indexOf(r - 1);
  const outSt = strides(p.perm.map((d) => p.shape[d]!));
  const inSt = strides(p.shape);
  const others = transposeOthers(p.perm);
  const [Sa, Sl] = [p.shape[a]!, p.shape[r - 1]!];
  const [tilesA, tilesL] = [Math.ceil(Sa / T), Math.ceil(Sl / T)];
  const total = tilesA * tilesL * others.reduce((x, d) => x * p.shape[d]!, 1);
  const batch = others.flatMap((d) => [p.shape[d]!, inSt[d]!, outSt[p.perm.indexOf(d)]!]);
  return { words: packUniforms(transposeFields(r), [total, tilesA, tilesL, Sa, Sl, inSt[a]!, outSt[j]!, ...batch]), tiles: total };
}

/** The kernel for a permute of a (collapsed) shape (see `collapsePermute`), adding a residual as it writes when `p.residual`. */
export function permuteKernel(p: PermuteParams): Kernel {
  const n = p.shape.reduce((a, b) => a * b, 1);
  const bytes = storageBytes(n, p.dtype) + 4 * n + (p.residual ? storageBytes(n, p.residual) : 0);
  const res = p.residual ? { residual: p.residual } : {};
  if (!movesInnermost(p)) {
    const st = strides(p.shape);
    const uniforms = packUniforms(permuteFields(p.shape.length), [n, ...p.perm.map((d) => p.shape[d]!), ...p.perm.map((d) => st[d]!)]);
    return { name: 'permute', source: permuteSource({ rank: p.shape.length, dtype: p.dtype, ...res }), workgroups: grid(Math.ceil(n / WG)), flops: p.residual ? n : 0, bytes, uniforms };
  }
  const { words, tiles } = transposeUniforms(p);
  return { name: 'transpose', source: transposeSource({ perm: p.perm, dtype: p.dtype, ...res }), workgroups: grid(tiles), flops: p.residual ? n : 0, bytes, uniforms: words };
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
const slabSource = memoSource('slab', (p: { dir: SlabParams['dir']; pieces: (DType | null)[]; dtype: DType }) => {
  const decls: string[] = [];
  const present = p.pieces.filter((q): q is DType => !!q);
  if (p.dir === 'gather') {
    present.forEach((dt, i) => decls.push(input(`p${i}`, i, dt)));
    decls.push(output('whole', present.length));
  } else {
    decls.push(input('whole', 0, p.dtype));
    present.forEach((_, i) => decls.push(output(`p${i}`, i + 1)));
  }
  const branches: string[] = [];
  let bi = 0;
  p.pieces.forEach((dt, i) => {
    const at = `o * u.w${i} + r - ${i === 0 ? '0u' : `u.hi${i - 1}`}`;
    let body = '';
    if (dt) {
      body = p.dir === 'gather' ? `v = ld_p${bi}(${at});` : `p${bi}[${at}] = v;`;
      bi++;
    }
    branches.push(`if (r < u.hi${i}) { ${body} }`);
  });
  const wholeAt = 'o * u.stride + u.start + r';
  return `${decls.join('\n')}
${uniformDecl(present.length + 1, slabFields(p.pieces.length))}
${main1d(WG)}
  if (gi >= u.n) { return; }
  let o = gi / u.W;
  let r = gi - o * u.W;
${p.dir === 'gather' ? `  var v = 0.0;\n  ${branches.join(' else ')}\n  whole[${wholeAt}] = v;` : `  let v = ld_whole(${wholeAt});\n  ${branches.join(' else ')}`}
}`;
});

/** Uniform fields of a slab kernel: region size, run length, the whole's run stride and start, each piece's width and end. */
function slabFields(pieces: number): UniformField[] {
  const f: UniformField[] = [['n', 'u32'], ['W', 'u32'], ['stride', 'u32'], ['start', 'u32']];
  for (let i = 0; i < pieces; i++) f.push([`w${i}`, 'u32'], [`hi${i}`, 'u32']);
  return f;
}

function slabUniforms(p: SlabParams): Uint32Array {
  const W = p.pieces.reduce((a, q) => a + q.size, 0) * p.inner;
  let hi = 0;
  const per = p.pieces.flatMap((q) => [q.size * p.inner, (hi += q.size * p.inner)]);
  return packUniforms(slabFields(p.pieces.length), [p.outer * W, W, p.total * p.inner, p.start * p.inner, ...per]);
}

/** Most pieces one slab dispatch binds: 8 storage bindings, one of them the whole tensor. */
export const MAX_SLAB_PIECES = 7;

export function slabKernel(p: SlabParams): Kernel {
  const span = p.pieces.reduce((a, q) => a + q.size, 0) * p.inner * p.outer;
  const presentBytes = p.pieces.reduce((a, q) => a + (q.dtype ? storageBytes(q.size * p.inner * p.outer, q.dtype) : 0), 0);
  const presentN = p.pieces.reduce((a, q) => a + (q.dtype ? q.size * p.inner * p.outer : 0), 0);
  const bytes = p.dir === 'gather' ? presentBytes + 4 * span : storageBytes(span, p.dtype) + 4 * presentN;
  return { name: p.dir === 'gather' ? 'concat' : 'split', source: slabSource({ dir: p.dir, pieces: p.pieces.map((q) => q.dtype), dtype: p.dtype }), workgroups: grid(Math.ceil(span / WG)), flops: 0, bytes, uniforms: slabUniforms(p) };
}
