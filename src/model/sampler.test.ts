// DDIM sampling: the timestep grid, the update's exactness for a perfect predictor, and a guided image on the tiny pipeline (Dawn).
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { testBackend } from '../engine/testing/gpu.js';
import { folderRepo } from './node-repo.js';
import { loadDiffusers } from './pipeline.js';
import { ddimStep, ddimTimesteps, sampleImage } from './sampler.js';

/** SD's scaled-linear ᾱ, computed here independently of the trainer's schedule. */
function acp(): Float64Array {
  const out = new Float64Array(1000);
  let prod = 1;
  const [a, b] = [Math.sqrt(0.00085), Math.sqrt(0.012)];
  for (let i = 0; i < 1000; i++) {
    const beta = (a + ((b - a) * i) / 999) ** 2;
    out[i] = prod *= 1 - beta;
  }
  return out;
}

/** A deterministic stand-in for N(0, 1) noise: a fixed, zero-mean pattern. */
function pattern(n: number, k: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + k * 78.233) * 1.3);
}

describe('DDIM', () => {
  it('uses the "leading" timesteps with offset 1 (diffusers DDIMScheduler for SD)', () => {
    const t50 = ddimTimesteps(50);
    expect(t50.slice(0, 3)).toEqual([981, 961, 941]);
    expect(t50.at(-1)).toBe(1);
    expect(ddimTimesteps(20).slice(0, 2)).toEqual([951, 901]);
    expect(() => ddimTimesteps(0)).toThrow(/sampling steps/);
  });

  it('moves x_t exactly onto x_prev when the model predicts the true noise (epsilon and v)', () => {
    const a = acp();
    const x0 = pattern(64, 1);
    const eps = pattern(64, 2);
    for (const pred of ['epsilon', 'v_prediction'] as const) {
      const [t, tp] = [801, 601];
      const [aT, aP] = [a[t]!, a[tp]!];
      const x = x0.map((v, i) => Math.sqrt(aT) * v + Math.sqrt(1 - aT) * eps[i]!);
      const out = pred === 'epsilon' ? eps : x0.map((v, i) => Math.sqrt(aT) * eps[i]! - Math.sqrt(1 - aT) * v);
      ddimStep(x, out, aT, aP, pred);
      x.forEach((v, i) => expect(v).toBeCloseTo(Math.sqrt(aP) * x0[i]! + Math.sqrt(1 - aP) * eps[i]!, 4));
    }
  });

  it('renders a guided image on the tiny pipeline: the right size, finite, reproducible, and guidance changes it', async () => {
    const backend = await testBackend();
    const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
    const p = await loadDiffusers(backend, folderRepo(`${root}/public/tiny`));
    const noise = pattern(4 * 8 * 8, 3);
    const opts = { prompt: 'a photo of a cat', width: 64, height: 64, steps: 2, guidance: 7.5, noise, alphasCumprod: acp(), prediction: 'epsilon' as const };
    const a = await sampleImage(p, opts);
    const b = await sampleImage(p, opts);
    const c = await sampleImage(p, { ...opts, guidance: 1 });
    expect([a.width, a.height, a.data.length]).toEqual([64, 64, 64 * 64 * 4]);
    expect(a.data).toEqual(b.data);
    expect(a.data.some((v, i) => v !== c.data[i])).toBe(true);
    const rgb = [...a.data].filter((_, i) => i % 4 !== 3);
    expect(new Set(rgb).size).toBeGreaterThan(16); // not a flat image
    p.dispose();
  }, 10 * 60_000);
});
