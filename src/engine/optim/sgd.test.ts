// Fused SGD with momentum against torch.optim.SGD in float64: Nesterov, decay, the non-finite guard and dispatch counts.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../backend.js';
import type { ParamArena } from './arena.js';
import { zeros, type Tensor } from '../tensor.js';
import { assertClose } from '../testing/allclose.js';
import { poisonedStep, randomArena, readStateOf, threeSteps } from '../testing/arenas.js';
import { testBackend } from '../testing/gpu.js';
import { sgd, sgdStep, type SgdHyper } from './sgd.js';

const sizesA = [3, 17, 64];
const sizesB = [5, 40];

/** torch.optim.SGD (dampening 0) in float64 on one parameter, gradient rounded to f32 then clipped. */
function refSgd(r: { p: Float64Array; buf: Float64Array | null }, g: ArrayLike<number>, clip: number, lr: number, h: SgdHyper): void {
  const d = Float64Array.from(r.p, (p, j) => Math.fround(g[j]!) * clip + h.weightDecay * p);
  if (h.momentum > 0) {
    r.buf = r.buf ? r.buf.map((b, j) => h.momentum * b + d[j]!) : Float64Array.from(d);
    if (h.nesterov) d.forEach((dj, j) => (d[j] = dj + h.momentum * r.buf![j]!));
    else d.set(r.buf);
  }
  r.p.forEach((p, j) => (r.p[j] = p - lr * d[j]!));
}

describe('fused SGD with momentum', () => {
  const cases: { h: SgdHyper; maxGradNorm?: number }[] = [
    { h: { momentum: 0.9, weightDecay: 0.1 }, maxGradNorm: 1 },
    { h: { momentum: 0.9, weightDecay: 0.05, nesterov: true } },
    { h: { momentum: 0, weightDecay: 0 } },
  ];
  for (const { h, maxGradNorm } of cases) {
    it(`three steps over two arenas match torch.optim.SGD in float64 (momentum ${h.momentum}${h.nesterov ? ', Nesterov' : ''}, ${maxGradNorm ? 'clipping' : 'no clipping'})`, async () => {
      const { arenas, refs, clips, flags } = await threeSteps(await testBackend(), sgd(h), [sizesA, sizesB], [1e-1, 3e-2], maxGradNorm, (p) => ({ p, buf: null as Float64Array | null }), (r, g, clip, lr) => refSgd(r, g, clip, lr, h));
      if (maxGradNorm) for (const clip of clips) expect(clip).toBeLessThan(0.2);
      expect(flags).toEqual([0, 0, 0]);
      // f32 arithmetic over 3 steps of size up to ~0.5: absolute 2e-6 on O(1) parameters
      for (const [ai, a] of arenas.entries())
        for (const [i, name] of a.names.entries()) {
          assertClose(await a.read(name), refs[ai]![i]!.p, { atol: 2e-6, rtol: 1e-5 }, `arena ${ai} ${name}`);
          if (h.momentum > 0) assertClose(await readStateOf(a, 'sgd_buf', name), refs[ai]![i]!.buf!, { atol: 2e-6, rtol: 1e-5 }, `arena ${ai} momentum buffer of ${name}`);
        }
      for (const a of arenas) a.dispose();
    });
  }

  it('an Inf gradient leaves parameters and momentum unchanged and raises the flag', async () => {
    const h: SgdHyper = { momentum: 0.9, weightDecay: 0.1 };
    const step = (a: ParamArena, nanFlag?: Tensor) => sgdStep(a, nanFlag ? { ...h, lr: 0.1, maxGradNorm: 1, nanFlag } : { ...h, lr: 0.1 });
    const { flag, returned, before, after, arena } = await poisonedStep(await testBackend(), sizesA, 'sgd_buf', step, (gs) => (gs[0]![1] = -Infinity));
    expect(returned).toBe(flag);
    expect((await flag.read())[0]).toBe(1);
    after.forEach((a, i) => expect(a).toEqual(before[i]));
    flag.dispose();
    arena.dispose();
  });

  it('refuses Nesterov without momentum; one dispatch per arena (meta device)', () => {
    expect(() => sgd({ momentum: 0, weightDecay: 0, nesterov: true })).toThrow(/Nesterov/);
    const b = new MetaBackend();
    const arenas = [randomArena(b, sizesA, 1), randomArena(b, sizesB, 2)];
    const norm = zeros(b, [1]);
    b.resetStats();
    sgd({ momentum: 0.9, weightDecay: 0 }).update(
      arenas.map((arena) => ({ arena, lr: 1e-3 })),
      { step: 1, gradNorm: norm },
    );
    expect(b.stats.dispatches).toBe(2);
    expect(b.stats.byKernel.get('sgd')?.dispatches).toBe(2);
    for (const a of arenas) expect(a.bytes).toBe(3 * a.numel * 4);
  });
});
