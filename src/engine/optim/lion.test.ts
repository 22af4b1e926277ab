// Fused Lion over two arenas against float64: per-arena LRs, decay, clipping, the non-finite guard and dispatch counts.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../backend.js';
import type { ParamArena } from './arena.js';
import type { Tensor } from '../tensor.js';
import { assertClose } from '../testing/allclose.js';
import { poisonedStep, randomArena, readStateOf, threeSteps } from '../testing/arenas.js';
import { testBackend } from '../testing/gpu.js';
import { lion, lionStep, type LionHyper } from './lion.js';

const sizesA = [3, 17, 64];
const sizesB = [5, 40];
const hyper: LionHyper = { beta1: 0.9, beta2: 0.99, weightDecay: 0.1 };

/** Float64 Lion on one parameter, gradient rounded to f32 then clipped. */
function refLion(r: { p: Float64Array; m: Float64Array }, g: ArrayLike<number>, clip: number, lr: number, h: LionHyper): void {
  for (let j = 0; j < r.p.length; j++) {
    const gj = Math.fround(g[j]!) * clip;
    const c = h.beta1 * r.m[j]! + (1 - h.beta1) * gj;
    r.p[j] = r.p[j]! * (1 - lr * h.weightDecay) - lr * Math.sign(c);
    r.m[j] = h.beta2 * r.m[j]! + (1 - h.beta2) * gj;
  }
}

describe('fused Lion', () => {
  for (const maxGradNorm of [1, undefined]) {
    it(`three steps over two arenas at their own LRs match float64 Lion (weight decay, ${maxGradNorm ? 'clipping by the global norm' : 'no clipping'})`, async () => {
      const { arenas, refs, clips, flags } = await threeSteps(await testBackend(), lion(hyper), [sizesA, sizesB], [1e-2, 3e-3], maxGradNorm, (p) => ({ p, m: new Float64Array(p.length) }), (r, g, clip, lr) => refLion(r, g, clip, lr, hyper));
      if (maxGradNorm) for (const clip of clips) expect(clip).toBeLessThan(0.2);
      expect(flags).toEqual([0, 0, 0]);
      // Updates are ±lr per element: f32 rounding only, absolute 1e-6 on O(1) parameters.
      for (const [ai, a] of arenas.entries())
        for (const [i, name] of a.names.entries()) {
          assertClose(await a.read(name), refs[ai]![i]!.p, { atol: 1e-6, rtol: 1e-6 }, `arena ${ai} ${name}`);
          assertClose(await readStateOf(a, 'lion_m', name), refs[ai]![i]!.m, { atol: 1e-6, rtol: 1e-5 }, `arena ${ai} momentum of ${name}`);
        }
      for (const a of arenas) a.dispose();
    });
  }

  it('a NaN gradient leaves parameters and momentum unchanged and raises the flag', async () => {
    const step = (a: ParamArena, nanFlag?: Tensor) => lionStep(a, nanFlag ? { ...hyper, lr: 1e-2, maxGradNorm: 1, nanFlag } : { ...hyper, lr: 1e-2 });
    const { flag, returned, before, after, arena } = await poisonedStep(await testBackend(), sizesA, 'lion_m', step, (gs) => (gs[2]![9] = NaN));
    expect(returned).toBe(flag);
    expect((await flag.read())[0]).toBe(1);
    after.forEach((a, i) => expect(a).toEqual(before[i]));
    flag.dispose();
    arena.dispose();
  });

  it('one dispatch per arena after the shared norm; one state buffer (meta device)', () => {
    const b = new MetaBackend();
    const arenas = [randomArena(b, sizesA, 1), randomArena(b, sizesB, 2)];
    const opt = lion(hyper);
    b.resetStats();
    opt.update(
      arenas.map((arena) => ({ arena, lr: 1e-3 })),
      { step: 1, maxGradNorm: 1 },
    );
    expect(b.stats.byKernel.get('lion')?.dispatches).toBe(2);
    expect(b.stats.dispatches).toBe(2 + 3); // norm: one partial pass per arena, one finish
    for (const a of arenas) expect(a.bytes).toBe(3 * a.numel * 4);
  });
});
