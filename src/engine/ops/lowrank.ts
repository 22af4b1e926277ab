// A linear layer with a low-rank adapter as one op: base GEMM, down and up projections, no separate adds.
import { needsGrad, noGrad, record, replayed, replayedAll, withPrior, type BackwardRule } from '../autograd.js';
import { reduceOn } from './reduce.js';
import { ARENA_ALIGN } from '../optim/arena.js';
import { numel, Tensor, zeros } from '../tensor.js';
import { checkLinear, linear, linearPlus, matmul, matmulPair, matmulPairs, recordLinear, type FoldedDropout, type PairGemm, type PlusTerm } from './matmul.js';
import { permute } from './layout.js';
import { check, emptyLike, launch, sameShape } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    lowrank: {
      /** x when down or w needs a gradient (their gradients read it); w when x does (dX reads it). */
      x: Tensor | null;
      w: Tensor | null;
      down: Tensor;
      up: Tensor;
      /** The down projection before dropout (its GEMMs mask it as they read it), when up needs a gradient. */
      h: Tensor | null;
      xShape: readonly number[];
      scale: number;
      p: number;
      seed: number;
      /** x stored [in, R] and y [out, R] (`RowLayout`). */
      xT: boolean;
      yT: boolean;
    };
    lowrankGroup: {
      x: Tensor | null;
      ws: (Tensor | null)[];
      /** The stacked down factors [n, rank, in] (a view over the adjacent slots) and the ups. */
      downs: Tensor;
      downLeaves: Tensor[];
      ups: Tensor[];
      /** The down projections [n, ...lead, rank] before dropout, when the ups need gradients. */
      h: Tensor | null;
      xShape: readonly number[];
      scale: number;
      p: number;
      seed: number;
    };
  }
}

/** The adapter of one layer: y gains scale * drop(x down^T) up^T. */
export interface LowRank {
  /** [rank, in] */
  down: Tensor;
  /** [out, rank] */
  up: Tensor;
  scale: number;
  /** Dropout on the down projection's output (training only), with the seed of its mask. */
  dropout?: { p: number; seed: number };
}

/**
 * y = x w^T + bias + residual + scale * drop(x down^T) up^T, with x [..., in], w [out, in] (often
 * frozen f16), bias [out], residual [..., out]. Two GEMMs: the down projection h; then one with
 * two K loops, the base over `in` and the up projection over the rank, whose epilogue adds the
 * bias and the residual, applying the dropout mask to h as it reads it (no separate dispatch: the
 * mask is a function of seed and index). Without an adapter this is `linear`.
 */
export function lowRankLinear(x: Tensor, w: Tensor, bias: Tensor | undefined, a: LowRank | null, residual?: Tensor, layout: RowLayout = {}): Tensor {
  if (layout.xT || layout.yT) return lowRankLinearT(x, w, bias, a, residual, !!layout.xT, !!layout.yT);
  if (!a) return linear(x, w, bias, 1, residual);
  checkFactors(w, a);
  const p = a.dropout?.p ?? 0;
  const seed = (a.dropout?.seed ?? 0) >>> 0;
  const { y, h } = noGrad(() => {
    // Kept from a checkpointed block's first run for its recompute: [R, rank] is small, a GEMM is not free.
    const h0 = replayed(() => linear(x, a.down));
    return { y: linearPlus(x, w, upTerm(h0, a.up, a.scale, p, seed), bias, residual), h: h0 };
  });
  recordLowRank(x, w, bias, a, residual, y, h);
  h.dispose();
  return y;
}

/**
 * Where a layer's rows are a matrix's columns: x given as [in, R] (`xT`) and/or y wanted as
 * [out, R] (`yT`), both 2-D. At batch 1 an NCHW activation [C, H·W] is such an x, and its pixels
 * the rows: a 1x1 convolution's (proj_in, proj_out) layout transposes fold into its GEMMs.
 */
export interface RowLayout {
  xT?: boolean;
  yT?: boolean;
}

/**
 * `lowRankLinear` with x [in, R] (xT) and/or y [out, R] (yT): the GEMMs read x transposed and
 * store y transposed (the residual shaped as y), so no layout copy runs; backward reads gY
 * transposed and stores dX transposed. The same products as on permuted copies. Without an
 * adapter: the permutes around a plain linear.
 */
function lowRankLinearT(x: Tensor, w: Tensor, bias: Tensor | undefined, a: LowRank | null, residual: Tensor | undefined, xT: boolean, yT: boolean): Tensor {
  const [outF, inF] = w.shape as [number, number];
  check(x.rank === 2 && x.shape[xT ? 0 : 1] === inF, () => `lowRankLinear: input [${x.shape.join(', ')}] is not ${xT ? `[${inF}, rows]` : `[rows, ${inF}]`}`);
  const R = x.shape[xT ? 1 : 0]!;
  const yShape = yT ? [outF, R] : [R, outF];
  check(!residual || sameShape(residual.shape, yShape), () => `lowRankLinear: residual [${residual!.shape.join(', ')}] is not the output's [${yShape.join(', ')}]`);
  if (!a) {
    const y = linear(xT ? permute(x, [1, 0]) : x, w, bias, 1, yT ? undefined : residual);
    return yT ? permute(y, [1, 0], residual) : y;
  }
  checkFactors(w, a);
  const p = a.dropout?.p ?? 0;
  const seed = (a.dropout?.seed ?? 0) >>> 0;
  const { y, h } = noGrad(() => {
    const h0 = replayed(() => matmulPair({ a: x, b: a.down, transA: xT, transB: true }, null)[0]!);
    const base: PairGemm = { a: x, b: w, transA: xT, transB: true, transOut: yT, plus: upTerm(h0, a.up, a.scale, p, seed) };
    const [y0] = matmulPair({ ...base, ...(bias ? { bias } : {}), ...(residual ? { residual } : {}) }, null);
    return { y: y0!, h: h0 };
  });
  recordLowRank(x, w, bias, a, residual, y, h, xT, yT);
  h.dispose();
  return y;
}

function checkFactors(w: Tensor, a: LowRank): void {
  const [outF, inF] = w.shape as [number, number];
  const rank = a.down.shape[0]!;
  check(sameShape(a.down.shape, [rank, inF]) && sameShape(a.up.shape, [outF, rank]), () => `lowRankLinear: factors [${a.down.shape.join(', ')}] and [${a.up.shape.join(', ')}] do not adapt [${outF}, ${inF}]`);
}

/** Record y = lowRankLinear(x, w, bias, a, residual) (its down projection h) on the tape, holding what its backward reads. */
function recordLowRank(x: Tensor, w: Tensor, bias: Tensor | undefined, a: LowRank, residual: Tensor | undefined, y: Tensor, h: Tensor, xT = false, yT = false): void {
  const p = a.dropout?.p ?? 0;
  const seed = (a.dropout?.seed ?? 0) >>> 0;
  const keepX = needsGrad(a.down) || needsGrad(w) ? x : null;
  const keepW = needsGrad(x) ? w : null;
  const keepH = needsGrad(a.up) ? h : null;
  const held = [keepX, keepW, keepH, a.down, a.up].filter((t): t is Tensor => t !== null);
  record('lowrank', [x, w, bias ?? null, a.down, a.up, residual ?? null], [y], { x: keepX, w: keepW, down: a.down, up: a.up, h: keepH, xShape: x.shape, scale: a.scale, p, seed, xT, yT }, held);
}

/**
 * Several layers on one input x [..., in] (`lowRankLinear` each, or `linear` where a layer has no
 * adapter), each its own op on the tape, with the independent GEMMs paired into shared dispatches
 * (`matmulPairs`): the adapters' down projections, then the base + up projections. Each output
 * is computed exactly as `lowRankLinear` computes it alone. residuals[i], when given, is added
 * in layer i's epilogue.
 */
export function lowRankLinears(x: Tensor, layers: readonly GroupLayer[], residuals: readonly (Tensor | undefined)[] = []): Tensor[] {
  const inF = x.shape[x.rank - 1]!;
  const lead = x.shape.slice(0, -1);
  for (const l of layers) {
    checkLinear(x, l.w, l.bias);
    if (l.lowRank) checkFactors(l.w, l.lowRank);
  }
  const adapted = layers.flatMap((l, i) => (l.lowRank ? [i] : []));
  const { ys, hs } = noGrad(() => {
    const x2 = x.reshape([numel(lead), inF]);
    // Kept from a checkpointed block's first run for its recompute, as `lowRankLinear` keeps its h.
    const h0 = replayedAll(adapted.length, () => matmulPairs(adapted.map((i) => ({ a: x2, b: layers[i]!.lowRank!.down, transB: true, shape: [...lead, layers[i]!.lowRank!.down.shape[0]!] }))));
    const h = new Map(adapted.map((i, j) => [i, h0[j]!]));
    const gemms = layers.map((l, i): PairGemm => {
      const a = l.lowRank;
      const r = residuals[i];
      const up = a ? { plus: upTerm(h.get(i)!, a.up, a.scale, a.dropout?.p ?? 0, (a.dropout?.seed ?? 0) >>> 0) } : {};
      return { a: x2, b: l.w, transB: true, shape: [...lead, l.w.shape[0]!], ...(l.bias ? { bias: l.bias } : {}), ...(r ? { residual: r } : {}), ...up };
    });
    const out = matmulPairs(gemms);
    x2.dispose();
    return { ys: out, hs: h };
  });
  layers.forEach((l, i) => (l.lowRank ? recordLowRank(x, l.w, l.bias, l.lowRank, residuals[i], ys[i]!, hs.get(i)!) : recordLinear(x, l.w, l.bias, residuals[i], ys[i]!)));
  for (const t of hs.values()) t.dispose();
  return ys;
}

/**
 * The gradient buffer a rule may add into directly: a leaf's existing f32 gradient (an arena's
 * slot), so the GEMM that computes the contribution also accumulates it. Null: return a fresh one.
 */
function leafGradient(t: Tensor): Tensor | null {
  const g = t.grad;
  return t.requiresGrad && t.node === null && g && g.dtype === 'f32' && sameShape(g.shape, t.shape) ? g : null;
}

/** The up projection as a second GEMM term: scale * drop(h) up^T, h's mask from `offset`. */
function upTerm(h: Tensor, up: Tensor, scale: number, p: number, seed: number, offset = 0): PlusTerm {
  return { a: h, b: up, transB: true, scale, ...(p > 0 ? { drop: { p, seed, offset } } : {}) };
}

/** The options folding dropout (p, seed) into one GEMM at `on`, offset by `offset` mask indices; none when p is 0. */
function fold(p: number, seed: number, on: FoldedDropout['on'], offset = 0): { drop?: FoldedDropout } {
  return p > 0 ? { drop: { on, p, seed, offset } } : {};
}

/*
 * y [R, out] = x w^T + b + r + s·hd up^T,  hd = drop(x down^T) [R, rank],  gY [R, out]:
 *   gH    [R, rank]  = drop(gY up)                  (the mask replayed from the seed in the epilogue)
 *   dUp   [out, rank] += s·gY^T hd                  (the saved h masked as the GEMM reads it)
 *   dX    [R, in]    = gY w + s·gH down             (one GEMM with two K loops)
 *   dDown [rank, in] += s·gH^T x                    (into the leaf's gradient where it has one)
 *   dW = gY^T x, dBias = sum_R gY, dResidual = gY
 * gH and dUp read only gY, and dX and dDown only gH: each pair runs as one dispatch (`matmulPair`).
 */
const lowRankBackward: BackwardRule<'lowrank'> = (s, [gy], needs, prior) => {
  const [outF, rank] = s.up.shape as [number, number];
  const inF = s.down.shape[1]!;
  const R = numel(s.xShape) / inF;
  // With a RowLayout, gY is [out, R] (read transposed) and dX [in, R] (stored transposed).
  const { xT, yT } = s;
  const g = gy!.reshape(yT ? [outF, R] : [R, outF]);
  const xm = xT ? [inF, R] : [R, inF];
  const x2 = s.x?.reshape(xm);
  const up = needs[4] ? gradTarget(s.up) : null;
  const down = needs[3] ? gradTarget(s.down) : null;
  const ghGemm: PairGemm | null = needs[0] || needs[3] ? { a: g, b: s.up, transA: yT, ...fold(s.p, s.seed, 'out') } : null;
  const upGemm: PairGemm | null = up && { a: g, b: s.h!.reshape([R, rank]), transA: !yT, alpha: s.scale, ...fold(s.p, s.seed, 'b'), into: up.t };
  const [gh] = matmulPair(ghGemm, upGemm);
  // x's gradient from its other uses (a context read by many layers) is added in dX's epilogue.
  const pr = priorFor(prior?.[0], s.xShape);
  const dxGemm: PairGemm | null = needs[0] ? { a: g, b: s.w!, transA: yT, transOut: xT, plus: { a: gh!, b: s.down, scale: s.scale }, ...(pr ? { residual: pr.reshape(xm) } : {}) } : null;
  const downGemm: PairGemm | null = down && { a: gh!, b: x2!, transA: true, transB: xT, alpha: s.scale, into: down.t };
  const [dx] = matmulPair(dxGemm, downGemm);
  const dW = needs[1] ? matmul(g, x2!, { transA: !yT, transB: xT }) : null;
  let dBias: Tensor | null = null;
  if (needs[2]) {
    dBias = emptyLike(g, [outF]);
    launch(reduceOn(g.backend, { inShape: [...g.shape], axes: [yT ? 1 : 0], dtype: g.dtype, scale: 1 }), [g], [dBias]);
  }
  const dX = dx?.reshape(s.xShape) ?? null;
  return [dX && pr ? withPrior(dX) : dX, dW, dBias, down?.fresh ?? null, up?.fresh ?? null, needs[5] ? gy! : null];
};

/** A prior gradient the GEMM epilogue can add: f32 and shaped as the input. */
function priorFor(t: Tensor | null | undefined, shape: readonly number[]): Tensor | null {
  return t && t.dtype === 'f32' && sameShape(t.shape, shape) ? t : null;
}

/**
 * Where a factor's gradient is summed: into the leaf's own f32 gradient (the arena's slot, so
 * nothing is returned) or a fresh zeroed tensor (`fresh`, returned to the tape).
 */
function gradTarget(leaf: Tensor): { t: Tensor; fresh: Tensor | null } {
  const acc = leafGradient(leaf);
  if (acc) return { t: acc, fresh: null };
  const t = zeros(leaf.backend, leaf.shape);
  return { t, fresh: t };
}

// ---- several adapted layers on one input ---------------------------------------------------------

/** One layer of a group sharing an input: its base weight and bias, and its adapter. */
export interface GroupLayer {
  w: Tensor;
  bias?: Tensor;
  lowRank: LowRank | null;
}

/** [n, ...inner] over n same-shaped tensors lying back to back in one storage, or null where they do not. */
function stacked(ts: readonly Tensor[]): Tensor | null {
  const t0 = ts[0]!;
  const adjacent = ts.every((t, z) => t.storage === t0.storage && t.offset === t0.offset + z * t0.bytes && sameShape(t.shape, t0.shape) && t.dtype === t0.dtype);
  return adjacent ? new Tensor(t0.backend, t0.storage, [ts.length, ...t0.shape], t0.dtype, t0.offset) : null;
}

/** View z of a stacked [n, ...] tensor, shaped `shape`. */
function slab(t: Tensor, z: number, shape: readonly number[]): Tensor {
  return new Tensor(t.backend, t.storage, shape, t.dtype, t.offset + z * numel(shape) * 4);
}

/**
 * `lowRankLinear` for several layers reading the same x (attention's q, k and v): when their
 * down factors lie back to back (one arena, same rank, scale and dropout), the down projections
 * run as one batched GEMM [n, R, rank] with one dropout mask over it (seeded by the first
 * layer's seed, applied by the GEMMs that read it); each layer's base and up projection is one
 * two-term GEMM, and backward sums the downs' gradients in one GEMM.
 * Otherwise (or when a layer's slab of rows x rank would not start on a 256-byte binding
 * boundary) each layer runs on its own.
 */
export function lowRankLinearGroup(x: Tensor, layers: readonly GroupLayer[]): Tensor[] {
  const a = layers.map((l) => l.lowRank);
  const a0 = a[0];
  const same = a0 && a.every((b) => b && b.scale === a0.scale && (b.dropout?.p ?? 0) === (a0.dropout?.p ?? 0));
  const lead = x.shape.slice(0, -1);
  const R = numel(lead);
  // Each layer's slab of the stacked projection is bound on its own: it must start on a 256-byte boundary.
  const aligned = a0 && (R * a0.down.shape[0]!) % ARENA_ALIGN === 0;
  const downs = same && aligned && layers.length > 1 ? stacked(a.map((b) => b!.down)) : null;
  if (!downs) return lowRankLinears(x, layers);
  const [, rank, inF] = downs.shape as [number, number, number];
  check(x.shape[x.rank - 1] === inF, () => `lowRankLinearGroup: input [${x.shape.join(', ')}] does not end in ${inF}`);
  const ups = a.map((b) => b!.up);
  const p = a0!.dropout?.p ?? 0;
  const seed = (a0!.dropout?.seed ?? 0) >>> 0;
  const { ys, h } = noGrad(() => {
    const x2 = x.reshape([R, inF]);
    const h0 = replayed(() => matmul(x2, downs, { transB: true })); // [n, R, rank], masked by the GEMMs reading it; kept for a recompute
    // Each layer's base + up projection reads only x and its slab of h: they run two per dispatch.
    const hz = layers.map((_, z) => slab(h0, z, [...lead, rank]));
    const out = matmulPairs(
      layers.map((l, z) => ({ a: x2, b: l.w, transB: true, shape: [...lead, l.w.shape[0]!], plus: upTerm(hz[z]!, ups[z]!, a0!.scale, p, seed, z * R * rank), ...(l.bias ? { bias: l.bias } : {}) })),
    );
    for (const t of hz) t.dispose();
    x2.dispose();
    return { ys: out, h: h0 };
  });
  const downLeaves = a.map((b) => b!.down);
  const keepX = downLeaves.some(needsGrad) || layers.some((l) => needsGrad(l.w)) ? x : null;
  const ws = layers.map((l) => (needsGrad(x) ? l.w : null));
  const keepH = ups.some(needsGrad) ? h : null;
  const held = [keepX, keepH, ...ws, downs, ...downLeaves, ...ups].filter((t): t is Tensor => t !== null);
  const inputs = [x, ...layers.flatMap((l, z) => [l.w, l.bias ?? null, downLeaves[z]!, ups[z]!])];
  record('lowrankGroup', inputs, ys, { x: keepX, ws, downs, downLeaves, ups, h: keepH, xShape: x.shape, scale: a0!.scale, p, seed }, held);
  h.dispose();
  downs.dispose();
  return ys;
}

/*
 * For each layer z: y_z = x w_z^T + b_z + s·hd_z up_z^T, hd = drop(x downs^T) [n, R, rank], gY_z [R, out_z]:
 *   gH    [n, R, rank]  : gH_z = drop(gY_z up_z)               (n GEMMs into one buffer, each masking its slab)
 *   dX    [R, in]       = sum_z (gY_z w_z + s·gH_z down_z)     (n GEMMs with two K loops into one buffer)
 *   dDown [n, rank, in] += s·gH^T x                            (one GEMM into the adjacent slots)
 *   dUp_z               += s·gY_z^T hd_z (h_z masked as read),  dW_z = gY_z^T x,  dBias_z = sum_R gY_z
 * gH_z runs with dUp_z as one dispatch, and the last dX GEMM with dDown's (`matmulPair`).
 */
const lowRankGroupBackward: BackwardRule<'lowrankGroup'> = (s, gOut, needs) => {
  const [n, rank, inF] = s.downs.shape as [number, number, number];
  const R = numel(s.xShape) / inF;
  const gs = gOut.map((g, z) => g?.reshape([R, s.ups[z]!.shape[0]!]) ?? null);
  const x2 = s.x?.reshape([R, inF]);
  const live = gs.flatMap((g, z) => (g ? [z] : []));
  const ups = s.ups.map((u, z) => (needs[4 + 4 * z] && gs[z] ? gradTarget(u) : null));
  const downs = Array.from({ length: n }, (_, z) => needs[3 + 4 * z]).some(Boolean) ? downsTarget(s.downLeaves, [n, rank, inF]) : null;
  // Slabs left zero (no gradient) need no mask: dropout keeps a zero zero.
  const gh = needs[0] || downs ? zeros(s.downs.backend, [n, R, rank]) : null;
  const views: Tensor[] = [];
  const view = (t: Tensor, z: number) => {
    const v = slab(t, z, [R, rank]);
    views.push(v);
    return v;
  };
  // gH_z = drop(gY_z up_z) and dUp_z += s·gY_z^T hd_z read only gY_z; dDown only gH; each dX_z GEMM gH_z and the dX before it.
  const ghs = gh ? live.map((z): PairGemm => ({ a: gs[z]!, b: s.ups[z]!, into: view(gh, z), ...fold(s.p, s.seed, 'out', z * R * rank) })) : [];
  const dUps = live.flatMap((z): PairGemm[] => (ups[z] ? [{ a: gs[z]!, b: view(s.h!, z), transA: true, alpha: s.scale, ...fold(s.p, s.seed, 'b', z * R * rank), into: ups[z]!.t }] : []));
  const downGemm: PairGemm | null = downs && { a: gh!, b: x2!, transA: true, alpha: s.scale, into: downs.t };
  const dxs = needs[0] ? live.map((z): PairGemm => ({ a: gs[z]!, b: s.ws[z]!, plus: { a: view(gh!, z), b: s.downLeaves[z]!, scale: s.scale } })) : [];
  const dx = groupSchedule(ghs, dUps, downGemm, dxs);
  for (const v of views) v.dispose();
  const dX = needs[0] ? (dx ?? zeros(s.downs.backend, [R, inF])) : null;
  const grads: (Tensor | null)[] = [dX?.reshape(s.xShape) ?? null];
  for (let z = 0; z < n; z++) {
    const g = gs[z];
    const i = 1 + 4 * z;
    grads.push(needs[i] && g ? matmul(g, x2!, { transA: true }) : null);
    let db: Tensor | null = null;
    if (needs[i + 1] && g) {
      db = emptyLike(g, [g.shape[1]!]);
      launch(reduceOn(g.backend, { inShape: [...g.shape], axes: [0], dtype: g.dtype, scale: 1 }), [g], [db]);
    }
    grads.push(db, needs[i + 2] && downs?.fresh ? slab(downs.fresh, z, [rank, inF]) : null, ups[z]?.fresh ?? null);
  }
  return grads;
};

/**
 * The group backward's GEMMs in as few dispatches as their order allows, two per dispatch
 * (`matmulPair`): the gH GEMMs paired among themselves (an odd one with a dUp), then each dX
 * GEMM, which adds into the one before it, with a GEMM nothing waits on (the dUps, then dDown,
 * which reads all of gH). Whatever is left runs in pairs at the end. 5 dispatches for q, k, v
 * where one gH and one dUp per dispatch, then dX with dDown last, took 6. Returns dX (null without dX GEMMs).
 */
function groupSchedule(ghs: readonly PairGemm[], dUps: readonly PairGemm[], down: PairGemm | null, dxs: readonly PairGemm[]): Tensor | null {
  const free = [...dUps];
  for (let i = 0; i < ghs.length; i += 2) matmulPair(ghs[i]!, ghs[i + 1] ?? free.shift() ?? null);
  if (down) free.push(down);
  let dx: Tensor | null = null;
  for (const g of dxs) [dx] = matmulPair(dx ? { ...g, into: dx } : g, free.shift() ?? null);
  matmulPairs(free);
  return dx;
}

/** The downs' gradients as one stack [n, rank, in]: their adjacent slots in the arena, or a fresh zeroed stack (`fresh`). */
function downsTarget(leaves: readonly Tensor[], shape: readonly number[]): { t: Tensor; fresh: Tensor | null } {
  const accs = leaves.map(leafGradient);
  const acc = accs.every((t) => t !== null) ? stacked(accs as Tensor[]) : null;
  if (acc) return { t: acc, fresh: null };
  const t = zeros(leaves[0]!.backend, shape);
  return { t, fresh: t };
}

export const lowRankRules = { lowrank: lowRankBackward, lowrankGroup: lowRankGroupBackward };
