// The global gradient norm and fused AdamW against float64: clipping, decay, the non-finite guard and dispatch counts.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../backend.js';
import { backward } from '../grad.js';
import { mul, sum } from '../ops/elementwise.js';
import { scope, tensor, zeros } from '../tensor.js';
import { testBackend } from '../testing/gpu.js';
import { assertClose, randomArray } from '../testing/allclose.js';
import { ParamArena } from './arena.js';
import { adamwStep, globalGradNorm, type AdamWOptions } from './adamw.js';
import type { Backend } from '../backend.js';

const sizes = [3, 17, 64];

function makeArena(b: Backend, seed = 10, sz = sizes): ParamArena {
  return new ParamArena(b, sz.map((n, i) => ({ name: `p${i}`, shape: [n], init: Float32Array.from(randomArray(n, seed + i)) })));
}

/** Give every parameter of the arena the gradient `gs[i]`, through backward of Σ p_i · g_i. */
function setGrads(arena: ParamArena, gs: ArrayLike<number>[]): void {
  arena.zeroGrad();
  arena.names.forEach((name, i) => {
    const p = arena.get(name);
    const loss = scope(() => sum(mul(p, tensor(arena.backend, gs[i]!, p.shape))));
    backward(loss);
    loss.dispose();
  });
}

/** Float64 AdamW (decoupled decay, bias correction, clip factor given) on one parameter. */
function refAdamW(r: { p: Float64Array; m: Float64Array; v: Float64Array }, g: ArrayLike<number>, clip: number, o: AdamWOptions): void {
  for (let j = 0; j < r.p.length; j++) {
    const gj = Math.fround(g[j]!) * clip;
    r.m[j] = o.beta1 * r.m[j]! + (1 - o.beta1) * gj;
    r.v[j] = o.beta2 * r.v[j]! + (1 - o.beta2) * gj * gj;
    const mhat = r.m[j]! / (1 - o.beta1 ** o.step);
    const vhat = r.v[j]! / (1 - o.beta2 ** o.step);
    r.p[j] = r.p[j]! - o.lr * o.weightDecay * r.p[j]! - (o.lr * mhat) / (Math.sqrt(vhat) + o.eps);
  }
}

const l2 = (gs: ArrayLike<number>[]) => Math.sqrt(gs.reduce((s, g) => s + Array.from(g).reduce((a, x) => a + Math.fround(x) ** 2, 0), 0));

describe('global gradient norm', () => {
  it('matches float64 over two arenas, one of them large enough for many partial sums', async () => {
    const b = await testBackend();
    const a1 = makeArena(b, 10);
    const a2 = makeArena(b, 30, [70000, 5]);
    const g1 = sizes.map((n, i) => randomArray(n, 40 + i, -2, 2));
    const g2 = [randomArray(70000, 50), randomArray(5, 51, -3, 3)];
    setGrads(a1, g1);
    setGrads(a2, g2);
    const both = globalGradNorm([a1, a2]);
    const one = globalGradNorm([a1]);
    // f32 partial sums of up to 70k squares: relative 1e-5
    expect(Math.abs((await both.read())[0]! / l2([...g1, ...g2]) - 1)).toBeLessThan(1e-5);
    expect(Math.abs((await one.read())[0]! / l2(g1) - 1)).toBeLessThan(1e-6);
    for (const t of [both, one, a1, a2]) t.dispose();
  });

  it('takes A + 1 dispatches and reads nothing back (meta device)', () => {
    const b = new MetaBackend();
    const norm = globalGradNorm([makeArena(b), makeArena(b)]);
    expect(norm.shape).toEqual([1]);
    expect(b.stats.dispatches).toBe(3);
  });
});

describe('fused AdamW', () => {
  const base = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 };

  for (const maxGradNorm of [1.0, undefined]) {
    it(`three steps match float64 AdamW (weight decay, ${maxGradNorm ? 'clipping active' : 'no clipping'})`, async () => {
      const b = await testBackend();
      const arena = makeArena(b);
      const ref = sizes.map((n, i) => ({ p: Float64Array.from(Float32Array.from(randomArray(n, 10 + i))), m: new Float64Array(n), v: new Float64Array(n) }));
      for (let step = 1; step <= 3; step++) {
        const gs = sizes.map((n, i) => randomArray(n, 100 * step + i, -2, 2));
        setGrads(arena, gs);
        const o = { ...base, step, maxGradNorm };
        const norm = globalGradNorm([arena]);
        const flag = adamwStep(arena, { ...o, gradNorm: norm });
        const refNorm = l2(gs);
        // the gradients' norm is about 10, so a max of 1 really clips
        const clip = maxGradNorm ? Math.min(1, maxGradNorm / (refNorm + 1e-6)) : 1;
        if (maxGradNorm) expect(clip).toBeLessThan(0.2);
        ref.forEach((r, i) => refAdamW(r, gs[i]!, clip, o));
        expect((await flag.read())[0]).toBe(0);
        norm.dispose();
        flag.dispose();
      }
      // f32 arithmetic over 3 steps of size ~lr: absolute 2e-6 (parameters are O(1), updates O(1e-2))
      for (let i = 0; i < sizes.length; i++) assertClose(await arena.read(`p${i}`), ref[i]!.p, { atol: 2e-6, rtol: 1e-5 }, `p${i} after 3 steps`);
      assertClose(await arena.stateBuffer('adam_m').read().then((m) => m.subarray(64, 64 + 17)), ref[1]!.m, { atol: 1e-6, rtol: 1e-5 }, 'first moment of p1');
      assertClose(await arena.stateBuffer('adam_v').read().then((v) => v.subarray(128, 128 + 64)), ref[2]!.v, { atol: 1e-7, rtol: 1e-5 }, 'second moment of p2');
      arena.dispose();
    });
  }

  for (const bad of [NaN, Infinity]) {
    it(`a ${bad} gradient leaves parameters and moments unchanged and raises the flag`, async () => {
      const b = await testBackend();
      const arena = makeArena(b);
      setGrads(arena, sizes.map((n, i) => randomArray(n, 60 + i)));
      adamwStep(arena, { ...base, step: 1, nanFlag: zeros(b, [1]) }).dispose();
      const before = await Promise.all([...arena.names.map((n) => arena.read(n)), arena.stateBuffer('adam_m').read(), arena.stateBuffer('adam_v').read()]);
      const gs = sizes.map((n, i) => randomArray(n, 70 + i));
      gs[1]![5] = bad; // one bad element in one parameter
      setGrads(arena, gs);
      const flag = zeros(b, [1]);
      const norm = globalGradNorm([arena]);
      expect(adamwStep(arena, { ...base, step: 2, maxGradNorm: 1, gradNorm: norm, nanFlag: flag })).toBe(flag);
      // without a norm given, the step computes its own and still refuses
      const flag2 = adamwStep(arena, { ...base, step: 2 });
      const after = await Promise.all([...arena.names.map((n) => arena.read(n)), arena.stateBuffer('adam_m').read(), arena.stateBuffer('adam_v').read()]);
      expect((await flag.read())[0]).toBe(1);
      expect((await flag2.read())[0]).toBe(1);
      after.forEach((a, i) => expect(a).toEqual(before[i]));
      for (const t of [flag, flag2, norm, arena]) t.dispose();
    });
  }

  it('one dispatch for all parameters; optimizer state allocated once (meta device)', () => {
    const b = new MetaBackend();
    const arena = makeArena(b);
    const norm = globalGradNorm([arena]);
    const flag = zeros(b, [1]);
    b.resetStats();
    for (let step = 1; step <= 3; step++) adamwStep(arena, { ...base, step, gradNorm: norm, nanFlag: flag });
    expect(b.stats.dispatches).toBe(3);
    expect(b.stats.byKernel.get('adamw')?.dispatches).toBe(3);
    expect(arena.bytes).toBe(4 * arena.numel * 4);
  });
});
