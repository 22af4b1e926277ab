// DDIM, Euler and Euler ancestral: their grids, each update's exactness for a perfect predictor, and a guided image on the tiny pipeline (Dawn).
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { testBackend } from '../engine/testing/gpu.js';
import { folderRepo } from './node-repo.js';
import { loadDiffusers } from './pipeline.js';
import { Rng } from '../engine/rng.js';
import { ddimStep, ddimTimesteps, denoisedFrom, eulerSchedule, eulerStep, sampleImage } from './sampler.js';

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

describe('Euler and Euler ancestral', () => {
  it("spaces k-diffusion's sigmas evenly in t from 999 to 0, log-interpolated, ending at 0", () => {
    const a = acp();
    const sig = (t: number) => Math.sqrt((1 - a[t]!) / a[t]!);
    const { timesteps, sigmas } = eulerSchedule(4, a);
    expect(timesteps).toEqual([999, 666, 333, 0]);
    expect(sigmas).toHaveLength(5);
    [999, 666, 333, 0].forEach((t, i) => expect(sigmas[i]).toBeCloseTo(sig(t), 10));
    expect(sigmas[4]).toBe(0);
    expect(sigmas[0]).toBeCloseTo(14.6146, 3); // SD 1.x's sigma_max
    const five = eulerSchedule(5, a); // t = 999, 749.25, ...: between integer steps, geometric in sigma
    expect(five.timesteps[1]).toBeCloseTo(749.25, 10);
    expect(five.sigmas[1]).toBeCloseTo(Math.exp(0.75 * Math.log(sig(749)) + 0.25 * Math.log(sig(750))), 10);
    const single = eulerSchedule(1, a);
    expect([single.timesteps, single.sigmas.length, single.sigmas[1]]).toEqual([[999], 2, 0]);
    expect(single.sigmas[0]).toBeCloseTo(sig(999), 10);
    // Zero-terminal-SNR schedules reach ᾱ = 0 at t = 999: sigma stays finite.
    const z = a.slice();
    z[999] = 0;
    expect(Number.isFinite(eulerSchedule(3, z).sigmas[0])).toBe(true);
    expect(() => eulerSchedule(0, a)).toThrow(/sampling steps/);
  });

  it('lands x = x0 + σ·ε exactly on x0 + σ_next·ε when the model predicts the true ε or v', () => {
    const a = acp();
    const x0 = pattern(64, 1);
    const eps = pattern(64, 2);
    const [t, sigma, sigmaNext] = [700, Math.sqrt((1 - a[700]!) / a[700]!), 1.7];
    for (const pred of ['epsilon', 'v_prediction'] as const) {
      const x = x0.map((v, i) => v + sigma * eps[i]!);
      // The model sees x / sqrt(σ² + 1) = sqrt(ᾱ)·x0 + sqrt(1 − ᾱ)·ε, and v = sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x0.
      const out = pred === 'epsilon' ? eps : x0.map((v, i) => Math.sqrt(a[t]!) * eps[i]! - Math.sqrt(1 - a[t]!) * v);
      const d = denoisedFrom(x, out, sigma, pred);
      d.forEach((v, i) => expect(v).toBeCloseTo(x0[i]!, 4));
      eulerStep(x, d, sigma, sigmaNext);
      x.forEach((v, i) => expect(v).toBeCloseTo(x0[i]! + sigmaNext * eps[i]!, 4));
    }
  });

  it('ancestral: steps down to σ_down and adds σ_up·z with σ_down² + σ_up² = σ_next²', () => {
    const x0 = pattern(64, 1);
    const eps = pattern(64, 2);
    const z = pattern(64, 5);
    const [sigma, sigmaNext] = [3, 1.2];
    const up = Math.sqrt((sigmaNext ** 2 * (sigma ** 2 - sigmaNext ** 2)) / sigma ** 2);
    const down = Math.sqrt(sigmaNext ** 2 - up ** 2);
    const x = x0.map((v, i) => v + sigma * eps[i]!);
    eulerStep(x, x0, sigma, sigmaNext, z);
    x.forEach((v, i) => expect(v).toBeCloseTo(x0[i]! + down * eps[i]! + up * z[i]!, 5));
    // The last step (σ_next = 0) adds no noise.
    const last = x0.map((v, i) => v + sigma * eps[i]!);
    eulerStep(last, x0, sigma, 0, z);
    last.forEach((v, i) => expect(v).toBeCloseTo(x0[i]!, 5));
  });
});

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
    // Euler and Euler ancestral on the same model and noise: reproducible (ancestral from its seeded rng), and each its own image.
    const e = await sampleImage(p, { ...opts, sampler: 'euler' });
    const ea = await sampleImage(p, { ...opts, sampler: 'euler_a', rng: new Rng(7) });
    const ea2 = await sampleImage(p, { ...opts, sampler: 'euler_a', rng: new Rng(7) });
    expect(ea.data).toEqual(ea2.data);
    for (const [x, y] of [[e, a], [ea, e]] as const) expect(x.data.some((v, i) => v !== y.data[i])).toBe(true);
    await expect(sampleImage(p, { ...opts, sampler: 'euler_a' })).rejects.toThrow(/needs an rng/);
    p.dispose();
  }, 10 * 60_000);
});
