// Dropout against its CPU twin: masks, rate, scale and seed replay, its backward, evaluation mode and one shared pipeline.
import { describe, expect, it } from 'vitest';
import { noGrad } from '../autograd.js';
import { backward, checkpoint } from '../grad.js';
import { keepThreshold } from '../kernels/dropout.js';
import { param, scope, tensor, type Tensor } from '../tensor.js';
import { testBackend } from '../testing/gpu.js';
import { pipelinesCompiledBy } from '../testing/pipelines.js';
import { randomArray } from '../testing/allclose.js';
import { dropout } from './dropout.js';
import { mul, sum } from './elementwise.js';

/** CPU twin of the shader's mask hash (kernels/dropout.ts MASK_HASH). */
function pcg(v: number): number {
  const s = (Math.imul(v, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}
function keptHost(seed: number, i: number, p: number): boolean {
  return pcg((pcg(i) + pcg((seed ^ 0x9e3779b9) >>> 0)) >>> 0) >= keepThreshold(p);
}

const N = 10000;

describe('dropout', () => {
  it('another size and rate reuse the pipeline, masks still the CPU twin', async () => {
    const b = await testBackend();
    const mask = async (n: number, p: number) => {
      const x = tensor(b, new Float32Array(n).fill(1), [n]);
      const y = await noGrad(() => scope(() => dropout(x, p, 7).read()));
      for (let i = 0; i < n; i++) expect(y[i] !== 0).toBe(keptHost(7, i, p));
      x.dispose();
    };
    await mask(300, 0.1);
    expect(await pipelinesCompiledBy(b, () => mask(777, 0.3))).toBe(0);
  });

  it('masks exactly as the CPU twin, keeps about 1-p, scales by 1/(1-p), replays by seed, differs across seeds', async () => {
    const b = await testBackend();
    const p = 0.1;
    const data = randomArray(N, 3, 0.5, 1.5); // never zero, so zeros in the output are dropped elements
    const x = tensor(b, data, [N]);
    const [a1, a2, c] = await noGrad(() => scope(() => Promise.all([dropout(x, p, 42).read(), dropout(x, p, 42).read(), dropout(x, p, 43).read()])));
    let kept = 0;
    let agree = 0;
    for (let i = 0; i < N; i++) {
      const k = a1[i] !== 0;
      expect(k).toBe(keptHost(42, i, p));
      if (k) {
        kept++;
        expect(Math.abs(a1[i]! - Math.fround(data[i]!) / (1 - p))).toBeLessThan(1e-6);
      }
      if (k === (c[i] !== 0)) agree++;
    }
    // kept ~ Binomial(N, 0.9): sigma = 0.003, allow 4 sigma
    expect(Math.abs(kept / N - (1 - p))).toBeLessThan(0.012);
    expect(a2).toEqual(a1);
    // independent masks agree on (1-p)^2 + p^2 = 0.82 of the elements
    expect(Math.abs(agree / N - 0.82)).toBeLessThan(0.02);
    x.dispose();
  });

  it('backward is mask * g / (1 - p), from the seed alone', async () => {
    const b = await testBackend();
    const p = 0.3;
    const n = 512;
    const data = randomArray(n, 5);
    const g = randomArray(n, 6);
    const x = param(b, data, [n]);
    const y = scope(() => dropout(x, p, 7));
    const gT = tensor(b, g, [n]);
    backward(y, gT);
    const dx = await x.grad!.read();
    for (let i = 0; i < n; i++) expect(Math.abs(dx[i]! - (keptHost(7, i, p) ? Math.fround(g[i]!) / (1 - p) : 0))).toBeLessThan(1e-6);
    for (const t of [x, y, gT]) t.dispose();
  });

  it('p = 0 and evaluation mode pass x through', async () => {
    const b = await testBackend();
    const data = randomArray(64, 8);
    const x = tensor(b, data, [64]);
    const [a, e] = await scope(() => Promise.all([dropout(x, 0, 1).read(), dropout(x, 0.5, 1, false).read()]));
    expect(a).toEqual(Float32Array.from(data));
    expect(e).toEqual(Float32Array.from(data));
    expect(() => dropout(x, 1, 1)).toThrow(/\[0, 1\)/);
    x.dispose();
  });

  it('every seed shares one pipeline', async () => {
    const b = await testBackend();
    const x = tensor(b, randomArray(300, 9), [300]);
    noGrad(() => scope(() => dropout(x, 0.25, 1)));
    await b.sync();
    const before = b.pipelines.size;
    noGrad(() => scope(() => [2, 3, 4, 2 ** 40 + 5].map((s) => dropout(x, 0.25, s))));
    await b.sync();
    expect(b.pipelines.size).toBe(before);
    x.dispose();
  });

  it('gradient checkpointing replays the mask: identical gradients', async () => {
    const b = await testBackend();
    const n = 200;
    const run = async (ckpt: boolean) => {
      const x = param(b, randomArray(n, 11), [n]);
      const w = param(b, randomArray(n, 12), [n]);
      const seg = (h: Tensor) => mul(dropout(mul(h, w), 0.4, 99), w);
      const loss = scope(() => sum(ckpt ? checkpoint(seg, [x]) : seg(x)));
      backward(loss);
      const out = await Promise.all([loss.read(), x.grad!.read(), w.grad!.read()]);
      for (const t of [loss, x, w]) t.dispose();
      return out;
    };
    const plain = await run(false);
    const checkpointed = await run(true);
    checkpointed.forEach((v, i) => expect(v).toEqual(plain[i]));
  });
});
