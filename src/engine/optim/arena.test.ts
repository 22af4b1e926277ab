// ParamArena: aligned layout in one storage, in-place gradient accumulation and zeroGrad, view ownership and dispose, input errors.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../backend.js';
import { backward } from '../grad.js';
import { add, mul, sum } from '../ops/elementwise.js';
import { scope, tensor } from '../tensor.js';
import { testBackend } from '../testing/gpu.js';
import { assertClose, randomArray } from '../testing/allclose.js';
import { ParamArena } from './arena.js';

const sizes = [3, 17, 64];
const inits = sizes.map((n, i) => Float32Array.from(randomArray(n, 10 + i)));

describe('ParamArena', () => {
  it('lays parameters out at 256-byte offsets in one storage, gradients in another', async () => {
    const b = await testBackend();
    const arena = new ParamArena(b, sizes.map((n, i) => ({ name: `p${i}`, shape: [n], init: inits[i]! })));
    expect([...arena.params.keys()]).toEqual(['p0', 'p1', 'p2']);
    expect([...arena.params.values()].map((p) => p.offset)).toEqual([0, 256, 512]);
    expect(new Set([...arena.params.values()].map((p) => p.storage)).size).toBe(1);
    expect(new Set([...arena.params.values()].map((p) => p.grad!.storage)).size).toBe(1);
    expect(arena.numel).toBe(192);
    expect(arena.bytes).toBe(2 * 192 * 4);
    for (const [i, p] of [...arena.params.values()].entries()) {
      expect(p.requiresGrad).toBe(true);
      expect(p.grad!.offset).toBe(p.offset);
      expect(await p.read()).toEqual(inits[i]);
    }
    arena.dispose();
  });

  it('backward accumulates in place across calls; zeroGrad clears with one fill', async () => {
    const b = await testBackend();
    const arena = new ParamArena(b, sizes.map((n, i) => ({ name: `p${i}`, shape: [n], init: inits[i]! })));
    const grads = [...arena.params.values()].map((p) => p.grad);
    const xs = sizes.map((n, i) => randomArray(n, 20 + i));
    for (let rep = 0; rep < 2; rep++) {
      // loss = Σ_i Σ p_i * x_i, so d/dp_i = x_i; two backward calls sum to 2 x_i
      const loss = scope(() => sizes.map((n, i) => sum(mul(arena.get(`p${i}`), tensor(b, xs[i]!, [n])))).reduce((a, c) => add(a, c)));
      backward(loss);
      loss.dispose();
    }
    for (let i = 0; i < sizes.length; i++) assertClose(await arena.readGrad(`p${i}`), xs[i]!.map((v) => 2 * v), { atol: 1e-6, rtol: 1e-6 }, `grad p${i}`);
    // the very same gradient views: accumulated in place, never replaced
    expect([...arena.params.values()].map((p) => p.grad)).toEqual(grads);
    arena.zeroGrad();
    for (const n of arena.names) expect((await arena.readGrad(n)).every((v) => v === 0)).toBe(true);
    arena.dispose();
  });

  it('disposing one view frees nothing the others use; dispose() returns everything', async () => {
    const b = new MetaBackend();
    const live0 = b.pool().liveBytes;
    const arena = new ParamArena(b, sizes.map((n, i) => ({ name: `p${i}`, shape: [n], init: inits[i]! })));
    arena.stateBuffer('adam_m');
    const live1 = b.pool().liveBytes;
    expect(live1 - live0).toBeGreaterThanOrEqual(3 * 192 * 4);
    arena.get('p1').dispose();
    expect(b.pool().liveBytes).toBe(live1);
    expect(arena.get('p2').disposed).toBe(false);
    arena.dispose();
    expect(b.pool().liveBytes).toBe(live0);
  });

  it('rejects mismatched initial values and duplicate names', async () => {
    const b = new MetaBackend();
    expect(() => new ParamArena(b, [{ name: 'a', shape: [2, 2], init: new Float32Array(3) }])).toThrow(/3 initial values/);
    expect(() => new ParamArena(b, [{ name: 'a', shape: [1], init: new Float32Array(1) }, { name: 'a', shape: [1], init: new Float32Array(1) }])).toThrow(/duplicate/);
  });
});
