// lowRankLinear: forward and backward against a CPU float64 reference and central differences; dropout and gradient accumulation against the unfused ops.
import { describe, expect, it } from 'vitest';
import { MetaBackend, type Backend } from '../backend.js';
import { backward, checkpoint } from '../grad.js';
import { empty, param, scope, Tensor, tensor } from '../tensor.js';
import { assertClose, randomArray } from '../testing/allclose.js';
import { checkOp } from '../testing/opcheck.js';
import { testBackend } from '../testing/gpu.js';
import { dropout } from './dropout.js';
import { add, mul, sum } from './elementwise.js';
import { ParamArena } from '../optim/arena.js';
import { lowRankLinear, lowRankLinearGroup, lowRankLinears } from './lowrank.js';
import { linear, matmul } from './matmul.js';
import { permute, split } from './layout.js';
import { reshape } from './view.js';

const TOL = { atol: 1e-5, rtol: 1e-5 };

/** y [R, O] = x [R, I] w^T [I, O] in float64. */
function mm(x: Float64Array, w: Float64Array, R: number, I: number, O: number): Float64Array {
  const y = new Float64Array(R * O);
  for (let r = 0; r < R; r++) for (let o = 0; o < O; o++) {
    let s = 0;
    for (let i = 0; i < I; i++) s += x[r * I + i]! * w[o * I + i]!;
    y[r * O + o] = s;
  }
  return y;
}

/** a^T b for a [R, A], b [R, B]: [A, B]. */
function tmm(a: Float64Array, b: Float64Array, R: number, A: number, B: number): Float64Array {
  const y = new Float64Array(A * B);
  for (let r = 0; r < R; r++) for (let i = 0; i < A; i++) for (let j = 0; j < B; j++) y[i * B + j] = y[i * B + j]! + a[r * A + i]! * b[r * B + j]!;
  return y;
}

/** g [R, O] w [O, I]: [R, I]. */
function gmm(g: Float64Array, w: Float64Array, R: number, O: number, I: number): Float64Array {
  const y = new Float64Array(R * I);
  for (let r = 0; r < R; r++) for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) y[r * I + i] = y[r * I + i]! + g[r * O + o]! * w[o * I + i]!;
  return y;
}

// Ragged sizes: 2 x 35 rows, 37 in, 19 out, rank 5.
const [B, T, I, O, RK] = [2, 35, 37, 19, 5];
const R = B * T;
const S = 0.75;

describe('lowRankLinear', () => {
  it('y = x w^T + b + r + s (x d^T) u^T, and every gradient, against float64 and central differences', async () => {
    await checkOp(await testBackend(), {
      inputs: [
        { shape: [B, T, I], grad: true },
        { shape: [O, I], grad: true },
        { shape: [O], grad: true },
        { shape: [RK, I], grad: true },
        { shape: [O, RK], grad: true },
        { shape: [B, T, O], grad: true },
      ],
      forward: ([x, w, b, d, u, r]) => lowRankLinear(x!, w!, b!, { down: d!, up: u!, scale: S }, r!),
      reference: ([x, w, b, d, u, r]) => {
        const base = mm(x!, w!, R, I, O);
        const delta = mm(mm(x!, d!, R, I, RK), u!, R, RK, O);
        return base.map((v, k) => v + b![k % O]! + r![k]! + S * delta[k]!);
      },
      referenceGrad: ([x, w, , d, u], g) => refGrads(x!, w!, d!, u!, g),
      tol: TOL,
      gradTol: { atol: 3e-5, rtol: 1e-5 },
    });
  });

  it('with dropout: output and gradients equal the unfused ops with the same mask seed', async () => {
    const b = await testBackend();
    const data = [I * R, O * I, O, RK * I, O * RK].map((n, i) => randomArray(n, 40 + i));
    const run = async (mode: 'fused' | 'unfused' | 'no dropout'): Promise<Float32Array[]> => {
      const [x, w, bias, d, u] = ([[B, T, I], [O, I], [O], [RK, I], [O, RK]] as const).map((sh, i) => param(b, data[i]!, [...sh]));
      const gOut = tensor(b, randomArray(R * O, 9), [B, T, O]);
      const y = scope(() => {
        const out =
          mode === 'unfused'
            ? add(linear(x!, w!, bias!), linear(dropout(linear(x!, d!), 0.3, 77), u!, undefined, S))
            : lowRankLinear(x!, w!, bias!, { down: d!, up: u!, scale: S, ...(mode === 'fused' ? { dropout: { p: 0.3, seed: 77 } } : {}) });
        backward(sum(mul(out, gOut)));
        return out;
      });
      const vals = await Promise.all([y, x!.grad!, w!.grad!, bias!.grad!, d!.grad!, u!.grad!].map((t) => t.read()));
      for (const t of [y, gOut, x, w, bias, d, u]) t!.dispose();
      return vals;
    };
    const got = await run('fused');
    const want = await run('unfused');
    const names = ['y', 'dx', 'dw', 'dbias', 'ddown', 'dup'];
    got.forEach((v, i) => assertClose(v, want[i]!, TOL, names[i]!));
    // the mask mattered: without dropout the up-projection's gradient is another
    const plain = await run('no dropout');
    expect(plain[5]!.some((v, i) => Math.abs(v - got[5]![i]!) > 1e-3)).toBe(true);
  });

  it('checkpointed: the recompute reuses the first run\'s down projections (one GEMM fewer each), gradients bit for bit as without, nothing leaked', async () => {
    const b = await testBackend();
    const shapes = [[B, T, I], [O, I], [O], [RK, I], [O, RK], [RK, I]] as const;
    const data = shapes.map((sh, i) => randomArray(sh.reduce((p, q) => p * q, 1), 60 + i));
    const run = async (be: Backend, ckpt: boolean) => {
      const before = be.kind === 'meta' ? (be as MetaBackend).pool().liveBuffers : 0;
      const [x, w, bias, d, u, d2] = shapes.map((sh, i) => param(be, data[i]!, [...sh]));
      const gOut = tensor(be, randomArray(R * O, 11), [B, T, O]);
      // Two adapted layers in one segment, with different downs: the recompute must hand each its own kept projection.
      const lr = (down: Tensor, seed: number) => ({ down, up: u!, scale: S, dropout: { p: 0.3, seed } });
      const seg = (t: Tensor) => add(lowRankLinear(t, w!, bias!, lr(d!, 5)), lowRankLinear(t, w!, undefined, lr(d2!, 6)));
      if (be.kind === 'meta') (be as MetaBackend).resetStats();
      scope(() => backward(sum(mul(ckpt ? checkpoint(seg, [x!]) : seg(x!), gOut))));
      const out = be.kind === 'gpu' ? await Promise.all([x!, d!, u!, d2!].map((t) => t.grad!.read())) : [];
      const matmuls = be.kind === 'meta' ? ((be as MetaBackend).stats.byKernel.get('matmul')?.dispatches ?? 0) : 0;
      for (const t of [gOut, x, w, bias, d, u, d2]) t!.dispose();
      const leaked = be.kind === 'meta' ? (be as MetaBackend).pool().liveBuffers - before : 0;
      return { out, matmuls, leaked };
    };
    const [checkpointed, plain] = [await run(b, true), await run(b, false)];
    checkpointed.out.forEach((v, i) => expect(Array.from(v), `gradient ${i}`).toEqual(Array.from(plain.out[i]!)));
    const meta = new MetaBackend();
    const [mk, mp] = [await run(meta, true), await run(meta, false)];
    // Each layer: 2 GEMMs forward, 3 backward (the two pairs, and dW: w is a parameter here); the recompute runs only the
    // base + up GEMM (its down projection is kept: 2 GEMMs each before).
    expect(mp.matmuls).toBe(2 * (2 + 3));
    expect(mk.matmuls).toBe(mp.matmuls + 2);
    expect([mk.leaked, mp.leaked]).toEqual([0, 0]);
  });

  it("adds x's gradient from its other use into dX's epilogue: no add dispatch, gradient as float64", async () => {
    const data = [R * I, O * I, RK * I, O * RK].map((n, i) => randomArray(n, 80 + i));
    // x2 = 2x feeds the layer and, after it, a sum: that gradient (ones) reaches x2 first and the layer's dX GEMM adds it.
    const run = async (be: Backend) => {
      const x = param(be, data[0]!, [B, T, I]);
      const [w, d, u] = [tensor(be, data[1]!, [O, I]), param(be, data[2]!, [RK, I]), param(be, data[3]!, [O, RK])];
      const loss = scope(() => {
        const x2 = mul(x, tensor(be, [2], [1]));
        return add(sum(lowRankLinear(x2, w, undefined, { down: d, up: u, scale: S })), sum(x2));
      });
      if (be.kind === 'meta') (be as MetaBackend).resetStats();
      backward(loss);
      const got = be.kind === 'gpu' ? await x.grad!.read() : null;
      const adds = be.stats.byKernel.get('add')?.dispatches ?? 0;
      for (const t of [x, w, d, u, loss]) t.dispose();
      return { got, adds };
    };
    const { got } = await run(await testBackend());
    const x2 = Float64Array.from(data[0]!, (v) => 2 * v);
    const [dx] = refGrads(x2, Float64Array.from(data[1]!), Float64Array.from(data[2]!), Float64Array.from(data[3]!), new Float64Array(R * O).fill(1));
    assertClose(got!, dx!.map((v) => 2 * (v + 1)), TOL, 'dx with the prior folded');
    expect((await run(new MetaBackend())).adds).toBe(0);
  });

  it("adds the factors' gradients into the leaves' existing gradients (no copy, no separate add)", async () => {
    const b = await testBackend();
    const [x, w, d, u] = ([[R, I], [O, I], [RK, I], [O, RK]] as const).map((sh, i) => tensor(b, randomArray(sh[0] * sh[1], 60 + i), [...sh]));
    const prior = [randomArray(RK * I, 70), randomArray(O * RK, 71)];
    const grads = async (seedGrads: boolean): Promise<Float32Array[]> => {
      d!.requiresGrad = u!.requiresGrad = true;
      d!.grad = seedGrads ? tensor(b, prior[0]!, [RK, I]) : null;
      u!.grad = seedGrads ? tensor(b, prior[1]!, [O, RK]) : null;
      const y = lowRankLinear(x!, w!, undefined, { down: d!, up: u!, scale: S });
      backward(sum(y));
      y.dispose();
      const out = await Promise.all([d!.grad!.read(), u!.grad!.read()]);
      d!.grad!.dispose();
      u!.grad!.dispose();
      return out;
    };
    const fresh = await grads(false);
    const accumulated = await grads(true);
    assertClose(accumulated[0]!, fresh[0]!.map((v, i) => v + prior[0]![i]!), TOL, 'ddown accumulated');
    assertClose(accumulated[1]!, fresh[1]!.map((v, i) => v + prior[1]![i]!), TOL, 'dup accumulated');
    for (const t of [x, w, d, u]) t!.dispose();
  });

  it('on the meta device: 2 GEMMs forward; backward 2 GEMM dispatches and no add or add_into when the leaves hold gradients', () => {
    const meta = new MetaBackend();
    const x = param(meta, [], [R, I]);
    const d = param(meta, [], [RK, I]);
    const u = param(meta, [], [O, RK]);
    const w = empty(meta, [O, I], 'f16');
    const r = param(meta, [], [R, O]);
    for (const t of [x, d, u, r]) t.grad = empty(meta, t.shape);
    meta.resetStats();
    const y = scope(() => lowRankLinear(x, w, undefined, { down: d, up: u, scale: S }, r));
    // the down projection, then the base and up projection as one GEMM with two K loops (3 GEMMs before)
    expect(meta.stats.dispatches).toBe(2);
    backward(y, empty(meta, [R, O]));
    const k = (n: string) => meta.stats.byKernel.get(n)?.dispatches ?? 0;
    // gH with dUp, then dX (both terms in one GEMM) with dDown, each pair one dispatch (5 GEMMs before)
    expect(k('matmul')).toBe(2 + 2);
    // x and the residual are leaves too here: their gradients arrive by one add_into each
    expect(k('add_into')).toBe(2);
    expect(k('add')).toBe(0);
    for (const t of [x, d, u, r, w, y]) t.dispose();
  });
});

function refGrads(x: Float64Array, w: Float64Array, d: Float64Array, u: Float64Array, g: Float64Array): Float64Array[] {
  const h = mm(x, d, R, I, RK);
  const gh = gmm(g, u, R, O, RK);
  const dxLow = gmm(gh, d, R, RK, I);
  const dx = gmm(g, w, R, O, I).map((v, k) => v + S * dxLow[k]!);
  const db = new Float64Array(O);
  for (let k = 0; k < g.length; k++) db[k % O] = db[k % O]! + g[k]!;
  return [dx, tmm(g, x, R, O, I), db, tmm(gh, x, R, RK, I).map((v) => S * v), tmm(g, h, R, O, RK).map((v) => S * v), g];
}

// ---- a group on one input: q, k, v ---------------------------------------------------------------

// rank x in and rows x rank multiples of 64 elements (256 bytes), so the downs lie back to back and each slab binds
const [NG, GI, GRK] = [3, 48, 4];
const [GB, GT] = [2, 32];
const GR = GB * GT;
const OUTS = [19, 23, 19];
/** Equal widths (attention's q, k, v), out x rank a multiple of 64 elements: the ups stack too. */
const SAME = [32, 32, 32];
const WIDEST = 32;

/** The group's factors in one arena, downs back to back (as the LoRA network lays out q, k, v). */
function groupArena(b: Backend, seed: number, outs = OUTS): ParamArena {
  const downs = outs.map((_, z) => ({ name: `d${z}`, shape: [GRK, GI], init: Float32Array.from(randomArray(GRK * GI, seed + z)) }));
  const ups = outs.map((o, z) => ({ name: `u${z}`, shape: [o, GRK], init: Float32Array.from(randomArray(o * GRK, seed + 10 + z)) }));
  return new ParamArena(b, [...downs, ...ups]);
}

type Mode = 'grouped' | 'single' | 'recorded';

describe('lowRankLinearGroup', () => {
  const xData = randomArray(GR * GI, 80);
  const wData = OUTS.map((_, z) => randomArray(WIDEST * GI, 81 + z));
  const bData = OUTS.map((_, z) => randomArray(WIDEST, 85 + z));
  const gData = OUTS.map((_, z) => randomArray(GR * WIDEST, 90 + z));

  /** Outputs, then the gradients of x, each bias (when used), the downs (stacked [3, rank, in]) and each up. */
  async function run(b: Backend, mode: Mode, p = 0, biases = true): Promise<Float32Array[]> {
    const outs = biases ? OUTS : SAME;
    const arena = groupArena(b, 50, outs);
    const x = param(b, xData, [GB, GT, GI]);
    const ws = outs.map((o, z) => tensor(b, wData[z]!.subarray(0, o * GI), [o, GI]));
    const bs = outs.map((o, z) => param(b, bData[z]!.subarray(0, o), [o]));
    const gs = outs.map((o, z) => tensor(b, gData[z]!.subarray(0, GR * o), [GB, GT, o]));
    const lr = (z: number) => ({ down: arena.get(`d${z}`), up: arena.get(`u${z}`), scale: S, ...(p ? { dropout: { p, seed: 5 } } : {}) });
    // 'recorded': the same computation from recorded ops, one stacked down projection, one mask, slices
    const stack = param(b, OUTS.flatMap((_, z) => [...randomArray(GRK * GI, 50 + z)]), [NG, GRK, GI]);
    const ys = scope(() => {
      let out: Tensor[];
      if (mode === 'recorded') {
        const h = dropout(matmul(reshape(x, [GR, GI]), stack, { transB: true }), p, 5);
        const hs = split(h, [1, 1, 1], 0);
        out = OUTS.map((_, z) => add(linear(x, ws[z]!, bs[z]!), linear(reshape(hs[z]!, [GB, GT, GRK]), arena.get(`u${z}`), undefined, S)));
      } else if (mode === 'grouped') out = lowRankLinearGroup(x, OUTS.map((_, z) => ({ w: ws[z]!, bias: biases ? bs[z]! : undefined, lowRank: lr(z) })));
      else out = OUTS.map((_, z) => lowRankLinear(x, ws[z]!, biases ? bs[z]! : undefined, lr(z)));
      backward(OUTS.map((_, z) => sum(mul(out[z]!, gs[z]!))).reduce((u, v) => add(u, v)));
      return out;
    });
    const downGrads = mode === 'recorded' ? [stack.grad!] : [new Tensor(b, arena.flatGrads.storage, [NG, GRK, GI], 'f32', 0)];
    const reads = [...ys, x.grad!, ...(biases ? bs.map((t) => t.grad!) : []), ...downGrads, ...OUTS.map((_, z) => arena.get(`u${z}`).grad!)];
    const vals = await Promise.all(reads.map((t) => t.read()));
    for (const t of [...ys, ...downGrads, stack, x, ...ws, ...bs, ...gs]) t.dispose();
    arena.dispose();
    return vals;
  }

  it('matches a float64 reference: outputs and the gradients of x, biases, downs (one GEMM into their adjacent slots) and ups', async () => {
    const b = await testBackend();
    const got = await run(b, 'grouped');
    const f = (v: ArrayLike<number>) => Float64Array.from(Float32Array.from(v));
    const x = f(xData);
    const dx = new Float64Array(GR * GI);
    const ys: Float64Array[] = [], dbs: Float64Array[] = [], dus: Float64Array[] = [];
    const dds = new Float64Array(NG * GRK * GI);
    OUTS.forEach((o, z) => {
      const [w, d, u, g] = [f(wData[z]!.subarray(0, o * GI)), f(randomArray(GRK * GI, 50 + z)), f(randomArray(o * GRK, 60 + z)), f(gData[z]!.subarray(0, GR * o))];
      const h = mm(x, d, GR, GI, GRK);
      const delta = mm(h, u, GR, GRK, o);
      ys.push(mm(x, w, GR, GI, o).map((v, k) => v + f(bData[z]!)[k % o]! + S * delta[k]!));
      const gh = gmm(g, u, GR, o, GRK);
      const [a, c] = [gmm(g, w, GR, o, GI), gmm(gh, d, GR, GRK, GI)];
      for (let k = 0; k < dx.length; k++) dx[k] = dx[k]! + a[k]! + S * c[k]!;
      const db = new Float64Array(o);
      for (let k = 0; k < g.length; k++) db[k % o] = db[k % o]! + g[k]!;
      dbs.push(db);
      dds.set(tmm(gh, x, GR, GRK, GI).map((v) => S * v), z * GRK * GI);
      dus.push(tmm(g, h, GR, o, GRK).map((v) => S * v));
    });
    [...ys, dx, ...dbs, dds, ...dus].forEach((e, i) => assertClose(got[i]!, e, { atol: 3e-5, rtol: 1e-5 }, `group value ${i}`));
    // and as the layers run one by one
    (await run(b, 'single')).forEach((v, i) => assertClose(got[i]!, v, TOL, `group vs single ${i}`));
  });

  it('with dropout: one mask over the stacked down projections, as the recorded ops compute it', async () => {
    const b = await testBackend();
    const got = await run(b, 'grouped', 0.3);
    const want = await run(b, 'recorded', 0.3);
    got.forEach((v, i) => assertClose(v, want[i]!, TOL, `dropout group ${i}`));
    // the mask mattered
    const plain = await run(b, 'grouped');
    expect(plain[NG]!.some((v, i) => Math.abs(v - got[NG]![i]!) > 1e-3)).toBe(true);
  });

  it('without biases and with equal widths, as the layers one by one', async () => {
    const b = await testBackend();
    const got = await run(b, 'grouped', 0, false);
    const want = await run(b, 'single', 0, false);
    got.forEach((v, i) => assertClose(v, want[i]!, TOL, `stacked outputs ${i}`));
  });

  it('on the meta device: q, k, v with dropout run 10 GEMM dispatches instead of 12, the masks folded into them, dX arriving in one add_into instead of 3', () => {
    const meta = new MetaBackend();
    const counts = (grouped: boolean, rows = GR) => {
      const arena = groupArena(meta, 1, SAME);
      const x = param(meta, [], [rows, GI]);
      x.grad = empty(meta, [rows, GI]);
      const ws = SAME.map((o) => empty(meta, [o, GI], 'f16'));
      const layers = SAME.map((_, z) => ({ w: ws[z]!, lowRank: { down: arena.get(`d${z}`), up: arena.get(`u${z}`), scale: S, dropout: { p: 0.1, seed: 3 } } }));
      meta.resetStats();
      const ys = scope(() => (grouped ? lowRankLinearGroup(x, layers) : layers.map((l) => lowRankLinear(x, l.w, undefined, l.lowRank))));
      const loss = scope(() => ys.map((y) => sum(y)).reduce((u, v) => add(u, v)));
      const adds = meta.stats.byKernel.get('add')?.dispatches ?? 0;
      backward(loss);
      const k = (n: string) => meta.stats.byKernel.get(n)?.dispatches ?? 0;
      const out = { matmul: k('matmul'), dropout: k('dropout'), backwardAdds: k('add') - adds + k('add_into') };
      for (const t of [x, ...ws, ...ys, loss]) t.dispose();
      arena.dispose();
      return out;
    };
    // forward 1 (downs) + 2 (base + up, two K loops each, two layers a dispatch), backward 2 (gH_0 with gH_1, gH_2 with dUp_0) + 3
    // (dX, both terms each, with dUp_1, dUp_2, then the downs' GEMM); x is a leaf holding a gradient (the GEMMs apply the dropout
    // mask to h as they read it, the gH GEMMs in their epilogue). Before the two-term GEMM: 5 + 11 grouped (a batched up
    // projection, a GEMM summing dX's adapter terms), 9 + 15 one by one; before the GEMM pairs 4 + 10 and 6 + 12; before the
    // layers' GEMMs were paired with each other 4 + 6
    expect(counts(true)).toEqual({ matmul: 3 + 5, dropout: 0, backwardAdds: 1 });
    expect(counts(false)).toEqual({ matmul: 6 + 6, dropout: 0, backwardAdds: 3 });
    // rows x rank not a multiple of 64 elements: the slabs could not be bound, so the layers run as their own ops, their
    // independent down projections and base + up GEMMs two per dispatch (2 + 2); backward as one by one
    const single = counts(false, GR - 1);
    expect(counts(true, GR - 1)).toEqual({ ...single, matmul: 4 + 6 });
  });

  it('lowRankLinears (independent layers, GEMMs two per dispatch): outputs and gradients bit for bit as the layers one by one', async () => {
    const b = await testBackend();
    const go = async (paired: boolean) => {
      const arena = groupArena(b, 70);
      const x = param(b, xData.subarray(0, (GR - 1) * GI), [GR - 1, GI]);
      const ws = OUTS.map((o, z) => tensor(b, wData[z]!.subarray(0, o * GI), [o, GI]));
      const bs = OUTS.map((o, z) => param(b, bData[z]!.subarray(0, o), [o]));
      const res = param(b, gData[1]!.subarray(0, (GR - 1) * OUTS[1]!), [GR - 1, OUTS[1]!]);
      // layer 1 has no adapter and a residual; 0 and 2 have dropout with their own seeds
      const lr = (z: number) => (z === 1 ? null : { down: arena.get(`d${z}`), up: arena.get(`u${z}`), scale: S, dropout: { p: 0.3, seed: 7 + z } });
      const residuals = [undefined, res, undefined];
      const ys = scope(() => {
        const layers = OUTS.map((_, z) => ({ w: ws[z]!, bias: bs[z]!, lowRank: lr(z) }));
        const out = paired ? lowRankLinears(x, layers, residuals) : layers.map((l, z) => lowRankLinear(x, l.w, l.bias, l.lowRank, residuals[z]));
        backward(out.map((y) => sum(mul(y, y))).reduce((u, v) => add(u, v)));
        return out;
      });
      const grads = [x.grad!, res.grad!, ...bs.map((t) => t.grad!), ...[0, 2].flatMap((z) => [arena.get(`d${z}`).grad!, arena.get(`u${z}`).grad!])];
      const vals = await Promise.all([...ys, ...grads].map((t) => t.read()));
      for (const t of [...ys, x, res, ...ws, ...bs]) t.dispose();
      arena.dispose();
      return vals;
    };
    const want = await go(false);
    const got = await go(true);
    expect(got.length).toBe(want.length);
    got.forEach((v, i) => expect(v, `value ${i}`).toEqual(want[i]));
  });
});

describe('lowRankLinear with a RowLayout (x [in, R], y [out, R])', () => {
  const [P, OUT] = [70, OUTS[0]!];
  const xData = randomArray(P * GI, 120);
  const gData = randomArray(P * OUT, 121);
  const rData = randomArray(P * OUT, 122);

  /** Outputs and gradients (x, residual, bias, down, up) of one layer, through the layout or through permuted copies. */
  async function run(b: Backend, which: 'xT' | 'yT', folded: boolean): Promise<Float32Array[]> {
    const arena = groupArena(b, 130);
    const w = tensor(b, randomArray(OUT * GI, 131), [OUT, GI]);
    const bias = param(b, randomArray(OUT, 132), [OUT]);
    const lr = { down: arena.get('d0'), up: arena.get('u0'), scale: S, dropout: { p: 0.3, seed: 9 } };
    // xT: x is [in, P]; yT: x is [P, in] and the output and residual [out, P]
    const x = param(b, xData, which === 'xT' ? [GI, P] : [P, GI]);
    const res = param(b, rData, which === 'yT' ? [OUT, P] : [P, OUT]);
    const g = tensor(b, gData, which === 'yT' ? [OUT, P] : [P, OUT]);
    const y = scope(() => {
      let out: Tensor;
      if (which === 'xT') out = folded ? lowRankLinear(x, w, bias, lr, res, { xT: true }) : lowRankLinear(permute(x, [1, 0]), w, bias, lr, res);
      else out = folded ? lowRankLinear(x, w, bias, lr, res, { yT: true }) : permute(lowRankLinear(x, w, bias, lr), [1, 0], res);
      // x also used elsewhere: its gradient arrives with a prior, which dX's epilogue adds
      backward(add(sum(mul(out, g)), sum(mul(x, x))));
      return out;
    });
    const vals = await Promise.all([y, x.grad!, res.grad!, bias.grad!, arena.get('d0').grad!, arena.get('u0').grad!].map((t) => t.read()));
    for (const t of [y, x, res, g, w, bias]) t.dispose();
    arena.dispose();
    return vals;
  }

  for (const which of ['xT', 'yT'] as const) {
    it(`${which}: output and every gradient bit for bit as through permuted copies (dropout, bias, residual, a prior on x)`, async () => {
      const b = await testBackend();
      const want = await run(b, which, false);
      const got = await run(b, which, true);
      got.forEach((v, i) => expect(v, `value ${i}`).toEqual(want[i]));
    });
  }

  it('on the meta device: no transpose dispatch either way, 2 GEMM dispatches forward and 2 backward each', () => {
    const meta = new MetaBackend();
    const arena = groupArena(meta, 1);
    const lr = { down: arena.get('d0'), up: arena.get('u0'), scale: S };
    const [x1, x2] = [param(meta, [], [GI, P]), param(meta, [], [P, GI])];
    const w = empty(meta, [OUT, GI], 'f16');
    meta.resetStats();
    const loss = scope(() => add(sum(lowRankLinear(x1, w, undefined, lr, undefined, { xT: true })), sum(lowRankLinear(x2, w, undefined, lr, undefined, { yT: true }))));
    backward(loss);
    expect(meta.stats.byKernel.get('transpose')?.dispatches ?? 0).toBe(0);
    expect(meta.stats.byKernel.get('matmul')?.dispatches).toBe(2 * (2 + 2));
    for (const t of [x1, x2, w, loss]) t.dispose();
    arena.dispose();
  });
});

