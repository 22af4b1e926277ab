// Prodigy against prodigyopt in float64: d's growth, LR 0 and NaN steps that change nothing, dispatch and state buffer counts.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../backend.js';
import { zeros } from '../tensor.js';
import { assertClose, randomArray } from '../testing/allclose.js';
import { clipFactor, l2, randomArena, readParams, readStateOf, writeGrads } from '../testing/arenas.js';
import { testBackend } from '../testing/gpu.js';
import type { ParamArena } from './arena.js';
import { Prodigy, type ProdigyHyper } from './prodigy.js';

const sizesA = [3, 17, 64];
const sizesB = [5, 40];

interface RefParam {
  p: Float64Array;
  p0: Float64Array;
  m: Float64Array;
  v: Float64Array;
  s: Float64Array;
}

/**
 * prodigyopt's Prodigy.step transcribed in float64, parameter groups as lists of parameters. prodigyopt
 * computes one dlr from the largest LR and refuses groups at any other nonzero LR; here each group's
 * dlr uses its own LR, which is the same computation whenever prodigyopt runs at all.
 */
class RefProdigy {
  d: number;
  dMax: number;
  numerator = 0;
  k = 0;
  readonly h: Required<ProdigyHyper>;

  constructor(
    readonly groups: RefParam[][],
    h: Required<ProdigyHyper>,
  ) {
    this.h = h;
    this.d = h.d0;
    this.dMax = h.d0;
  }

  static start(params: Float64Array[][], h: Required<ProdigyHyper>): RefProdigy {
    const z = (p: Float64Array) => new Float64Array(p.length);
    return new RefProdigy(
      params.map((ps) => ps.map((p) => ({ p: Float64Array.from(p), p0: Float64Array.from(p), m: z(p), v: z(p), s: z(p) }))),
      h,
    );
  }

  /** One step with (already clipped) gradients per group and parameter. */
  step(grads: ArrayLike<number>[][], lrs: number[]): void {
    const { beta1: b1, beta2: b2, beta3: b3, eps, weightDecay, d0, dCoef, growthRate } = this.h;
    const bc = this.h.biasCorrection ? Math.sqrt(1 - b2 ** (this.k + 1)) / (1 - b1 ** (this.k + 1)) : 1;
    let d = this.d;
    let delta = 0;
    let denom = 0;
    this.groups.forEach((ps, gi) => {
      const dlr = d * lrs[gi]! * bc;
      if (!(lrs[gi]! > 0)) return;
      ps.forEach((r, i) => {
        const g = grads[gi]![i]!;
        let dot = 0;
        for (let j = 0; j < r.p.length; j++) dot += g[j]! * (r.p0[j]! - r.p[j]!);
        delta += (d / d0) * dlr * dot;
        for (let j = 0; j < r.p.length; j++) {
          r.m[j] = b1 * r.m[j]! + d * (1 - b1) * g[j]!;
          r.v[j] = b2 * r.v[j]! + d * d * (1 - b2) * g[j]! * g[j]!;
          r.s[j] = b3 * r.s[j]! + (this.h.safeguardWarmup ? (d / d0) * d : (d / d0) * dlr) * g[j]!;
          denom += Math.abs(r.s[j]!);
        }
      });
    });
    if (denom === 0) return;
    const numerator = this.numerator * b3 + delta;
    const dHat = (dCoef * numerator) / denom;
    if (d === d0) d = Math.max(d, dHat);
    this.dMax = Math.max(this.dMax, dHat);
    d = Math.min(this.dMax, d * growthRate);
    this.groups.forEach((ps, gi) => {
      const dlr = this.d * lrs[gi]! * bc;
      for (const [i, r] of ps.entries())
        for (let j = 0; j < r.p.length; j++) {
          // without a first moment prodigyopt steps along the gradient times the new d
          const mj = b1 > 0 ? r.m[j]! : d * grads[gi]![i]![j]!;
          r.p[j] = r.p[j]! - weightDecay * dlr * r.p[j]!;
          r.p[j] = r.p[j]! - (dlr * mj) / (Math.sqrt(r.v[j]!) + d * eps);
        }
    });
    this.numerator = numerator;
    this.d = d;
    this.k++;
  }
}

const full = (h: ProdigyHyper) => new Prodigy(h).hyper;

/**
 * d within `dTol` relative; the parameters' displacement p - p0 within 1e-6 absolute plus `dTol`
 * of the largest displacement (every step scales with d, so d's error carries into the parameters).
 */
async function expectMatches(arenas: ParamArena[], ref: RefProdigy, opt: Prodigy, dTol: number): Promise<void> {
  const got = await opt.scalars();
  expect(got.k).toBe(ref.k);
  expect(Math.abs(got.d / ref.d - 1)).toBeLessThan(dTol);
  expect(Math.abs(got.dMax / ref.dMax - 1)).toBeLessThan(dTol);
  const moved = Math.max(...ref.groups.flat().flatMap((r) => [...r.p].map((p, j) => Math.abs(p - r.p0[j]!))));
  for (const [ai, a] of arenas.entries())
    for (const [i, name] of a.names.entries()) {
      const r = ref.groups[ai]![i]!;
      assertClose(await a.read(name), r.p, { atol: 1e-6 + dTol * moved, rtol: 0 }, `arena ${ai} ${name}`);
      assertClose(await readStateOf(a, 'prodigy_s', name), r.s, { atol: 1e-6 * Math.max(...r.s.map(Math.abs)), rtol: 1e-4 }, `arena ${ai} s of ${name}`);
    }
}

describe('Prodigy', () => {
  const cases: { name: string; h: ProdigyHyper; lrs: number[]; maxGradNorm?: number }[] = [
    { name: 'equal LRs as prodigyopt, clipping by the global norm, weight decay', h: { beta1: 0.9, beta2: 0.99, weightDecay: 0.1, d0: 1e-3 }, lrs: [1, 1], maxGradNorm: 1 },
    { name: 'per-arena LRs, bias correction, bounded growth', h: { d0: 1e-3, biasCorrection: true, growthRate: 1.5 }, lrs: [1, 0.5] },
    { name: 'safeguard warmup, beta1 0', h: { beta1: 0, d0: 1e-3, safeguardWarmup: true, weightDecay: 0.01 }, lrs: [0.8, 0.8] },
  ];
  for (const c of cases) {
    it(`five steps over two arenas match prodigyopt in float64 (${c.name})`, async () => {
      const b = await testBackend();
      const arenas = [randomArena(b, sizesA, 10), randomArena(b, sizesB, 20)];
      const opt = new Prodigy(c.h);
      const ref = RefProdigy.start(await Promise.all(arenas.map(readParams)), opt.hyper);
      const dirs = [sizesA, sizesB].map((sz, ai) => sz.map((n, i) => randomArray(n, 7 + 10 * ai + i, -2, 2)));
      for (let step = 1; step <= 5; step++) {
        // a fixed direction per element with a random size each step, so p0 - p lines up with the gradients and d grows
        const gs = [sizesA, sizesB].map((sz, ai) => sz.map((n, i) => randomArray(n, 1000 * step + 100 * ai + i, 0.5, 1.5).map((x, j) => x * dirs[ai]![i]![j]!)));
        arenas.forEach((a, i) => writeGrads(a, gs[i]!));
        const flag = opt.update(
          arenas.map((arena, i) => ({ arena, lr: c.lrs[i]! })),
          { step, maxGradNorm: c.maxGradNorm },
        );
        const clip = clipFactor(l2(...gs), c.maxGradNorm);
        if (c.maxGradNorm) expect(clip).toBeLessThan(0.2);
        ref.step(
          gs.map((ps) => ps.map((g) => g.map((x) => Math.fround(x) * clip))),
          c.lrs,
        );
        expect((await flag.read())[0]).toBe(0);
        flag.dispose();
      }
      expect(ref.d).toBeGreaterThan(1.5 * ref.h.d0);
      // d from f32 state and partial sums: 1e-4 relative (about 1e-5 seen; p0 - p in f32 costs 1e-6 a step)
      await expectMatches(arenas, ref, opt, 1e-4);
      opt.dispose();
      for (const a of arenas) a.dispose();
    });
  }

  it('grows d from d0 on a quadratic over ten steps as prodigyopt does (default hyperparameters, zero-initialized parameters)', async () => {
    const b = await testBackend();
    const sizes = [16, 48];
    const target = sizes.map((n, i) => Float64Array.from(Float32Array.from(randomArray(n, 500 + i, -2, 2))));
    const arena = randomArena(b, sizes, null);
    const opt = new Prodigy();
    const ref = RefProdigy.start([await readParams(arena)], opt.hyper);
    const ds: number[] = [];
    for (let step = 1; step <= 10; step++) {
      // f(p) = |p - t|² / 2: the gradient is p - t, from the GPU's own parameters
      const ps = await readParams(arena);
      writeGrads(
        arena,
        ps.map((p, i) => p.map((x, j) => x - target[i]![j]!)),
      );
      opt.update([{ arena, lr: 1 }], { step }).dispose();
      ref.step(
        [ref.groups[0]!.map((r, i) => r.p.map((x, j) => Math.fround(Math.fround(x) - target[i]![j]!)))],
        [1],
      );
      ds.push((await opt.scalars()).d);
    }
    // The first step sees p = p0, so d stays d0; from then on it grows by orders of magnitude.
    expect(ds[0]).toBe(Math.fround(1e-6));
    for (let i = 1; i < ds.length; i++) expect(ds[i]!).toBeGreaterThanOrEqual(ds[i - 1]!);
    expect(ds[9]!).toBeGreaterThan(1e-4);
    expect(Math.abs(ds[9]! / ref.d - 1)).toBeLessThan(1e-3);
    await expectMatches([arena], ref, opt, 1e-3);
    opt.dispose();
    arena.dispose();
  });

  it('a step at LR 0 (first warmup step) changes nothing; a NaN gradient changes nothing, d included, and raises the flag', async () => {
    const b = await testBackend();
    const arena = randomArena(b, sizesA, 40);
    const opt = new Prodigy({ d0: 1e-3 });
    const snapshot = async () => [...(await Promise.all([...arena.names.map((n) => arena.read(n)), ...['prodigy_m', 'prodigy_v', 'prodigy_s'].map((k) => arena.stateBuffer(k).read())])), Object.values(await opt.scalars())];
    const grads = (seed: number) => sizesA.map((n, i) => randomArray(n, seed + i, -1, 3));

    writeGrads(arena, grads(50));
    const start = (await snapshot()).slice(0, -1);
    opt.update([{ arena, lr: 0 }], { step: 1 }).dispose();
    expect((await snapshot()).slice(0, -1)).toEqual(start);
    expect(await opt.scalars()).toEqual({ d: Math.fround(1e-3), dMax: Math.fround(1e-3), numerator: 0, k: 0 });

    for (let step = 2; step <= 3; step++) {
      writeGrads(arena, grads(50 + 10 * step));
      opt.update([{ arena, lr: 1 }], { step }).dispose();
    }
    const before = await snapshot();
    expect((await opt.scalars()).k).toBe(2);
    const gs = grads(90);
    gs[1]![3] = NaN;
    writeGrads(arena, gs);
    const flag = zeros(b, [1]);
    expect(opt.update([{ arena, lr: 1 }], { step: 4, maxGradNorm: 1, nanFlag: flag })).toBe(flag);
    expect((await flag.read())[0]).toBe(1);
    expect(await snapshot()).toEqual(before);
    flag.dispose();
    opt.dispose();
    arena.dispose();
  });

  it('2A + 1 dispatches per update after the norm, four state buffers, and one set of arenas (meta device)', () => {
    const b = new MetaBackend();
    const arenas = [randomArena(b, sizesA, 1), randomArena(b, sizesB, 2)];
    const opt = new Prodigy();
    const norm = zeros(b, [1]);
    const groups = arenas.map((arena) => ({ arena, lr: 1 }));
    b.resetStats();
    for (let step = 1; step <= 3; step++) opt.update(groups, { step, gradNorm: norm });
    expect(b.stats.dispatches).toBe(3 * 5);
    expect(b.stats.byKernel.get('prodigy_finish')?.dispatches).toBe(3);
    for (const a of arenas) expect(a.bytes).toBe(6 * a.numel * 4);
    expect(() => opt.update(groups.slice(1), { step: 4, gradNorm: norm })).toThrow(/same arenas/);
    expect(full({}).beta3).toBeCloseTo(Math.sqrt(0.999), 12);
  });
});
