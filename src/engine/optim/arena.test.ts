import { describe, expect, it } from 'vitest';
import { backward } from '../grad.js';
import { mul, sum } from '../ops/elementwise.js';
import { scope, tensor } from '../tensor.js';
import { testBackend } from '../testing/gpu.js';
import { assertClose, randomArray } from '../testing/allclose.js';
import { ParamArena } from './arena.js';
import { adamwStep, globalGradNorm } from './adamw.js';

const sizes = [3, 17, 64];

function makeArena(b: Awaited<ReturnType<typeof testBackend>>) {
  return new ParamArena(b, sizes.map((n, i) => ({ name: `p${i}`, shape: [n], init: Float32Array.from(randomArray(n, 10 + i)) })));
}

describe('ParamArena', () => {
  it('aligned views, in-place gradient accumulation across backward calls, zeroGrad', async () => {
    const b = await testBackend();
    const arena = makeArena(b);
    const xs = sizes.map((n, i) => randomArray(n, 20 + i));
    for (let rep = 0; rep < 2; rep++) {
      for (let i = 0; i < sizes.length; i++) {
        const loss = scope(() => sum(mul(arena.get(`p${i}`), tensor(b, xs[i]!, [sizes[i]!]))));
        backward(loss);
        loss.dispose();
      }
    }
    for (let i = 0; i < sizes.length; i++) {
      expect(arena.get(`p${i}`).offset % 256).toBe(0);
      assertClose(await arena.readGrad(`p${i}`), xs[i]!.map((v) => 2 * v), { atol: 1e-6, rtol: 1e-6 }, `grad p${i}`);
    }
    arena.zeroGrad();
    expect((await arena.readGrad('p1')).every((v) => v === 0)).toBe(true);
    arena.dispose();
    await b.sync();
  });
});

describe('fused AdamW', () => {
  it('three steps with weight decay and clipping match a float64 AdamW', async () => {
    const b = await testBackend();
    const arena = makeArena(b);
    const o = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1.0 };
    const ref = sizes.map((n, i) => ({ p: Float64Array.from(Float32Array.from(randomArray(n, 10 + i))), m: new Float64Array(n), v: new Float64Array(n) }));
    for (let step = 1; step <= 3; step++) {
      const gs = sizes.map((n, i) => randomArray(n, 100 * step + i, -2, 2));
      arena.zeroGrad();
      for (let i = 0; i < sizes.length; i++) {
        const loss = scope(() => sum(mul(arena.get(`p${i}`), tensor(b, gs[i]!, [sizes[i]!]))));
        backward(loss);
        loss.dispose();
      }
      const norm = globalGradNorm([arena]);
      const refNorm = Math.sqrt(gs.reduce((s, g) => s + g.reduce((a, x) => a + Math.fround(x) ** 2, 0), 0));
      expect((await norm.read())[0]).toBeCloseTo(refNorm, 4);
      adamwStep(arena, { ...o, step, gradNorm: norm });
      norm.dispose();
      const clip = Math.min(1, o.maxGradNorm / (refNorm + 1e-6));
      ref.forEach((r, i) => {
        for (let j = 0; j < r.p.length; j++) {
          const g = Math.fround(gs[i]![j]!) * clip;
          r.m[j] = o.beta1 * r.m[j]! + (1 - o.beta1) * g;
          r.v[j] = o.beta2 * r.v[j]! + (1 - o.beta2) * g * g;
          r.p[j] = r.p[j]! * (1 - o.lr * o.weightDecay) - (o.lr * r.m[j]! / (1 - o.beta1 ** step)) / (Math.sqrt(r.v[j]! / (1 - o.beta2 ** step)) + o.eps);
        }
      });
    }
    for (let i = 0; i < sizes.length; i++) assertClose(await arena.read(`p${i}`), ref[i]!.p, { atol: 2e-6, rtol: 1e-5 }, `p${i} after 3 steps`);
    arena.dispose();
  });

  it('a NaN gradient leaves parameters unchanged and raises the flag', async () => {
    const b = await testBackend();
    const arena = makeArena(b);
    const before = await arena.read('p2');
    const loss = scope(() => sum(mul(arena.get('p2'), tensor(b, new Float32Array(64).fill(NaN), [64]))));
    backward(loss);
    loss.dispose();
    const norm = globalGradNorm([arena]);
    const flag = tensor(b, [0], [1]);
    adamwStep(arena, { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01, step: 1, maxGradNorm: 1, gradNorm: norm, nanFlag: flag });
    expect((await flag.read())[0]).toBe(1);
    expect(await arena.read('p2')).toEqual(before);
    norm.dispose();
    flag.dispose();
    arena.dispose();
  });
});
