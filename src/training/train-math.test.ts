import { describe, expect, it } from 'vitest';
import { planRun, PlanError } from './arithmetic.js';
import { DEFAULT_CONFIG, validateConfig } from './config.js';
import { alphasCumprod, minSnrWeight } from './noise.js';
import { Rng } from './rng.js';
import { makeSchedule } from './schedule.js';

const cfg = (o: Partial<typeof DEFAULT_CONFIG>) => ({ ...DEFAULT_CONFIG, ...o });

describe('recipe arithmetic', () => {
  it('defaults: 2000 steps, LR 1e-4 / 5e-5, 200 warmup steps', () => {
    const p = planRun(DEFAULT_CONFIG, 20);
    expect(p).toMatchObject({ effectiveBatch: 1, steps: 2000, unetLr: 1e-4, textEncoderLr: 5e-5, warmupSteps: 200, imagesPerEpoch: 20, epochs: 100, saveEvery: 200 });
  });
  it('batch 4 x accumulation 2: 250 steps, linear LR 8e-4, sqrt 2.828e-4, warmup 25', () => {
    const p = planRun(cfg({ batchSize: 4, gradAccumulation: 2 }), 10);
    expect(p.effectiveBatch).toBe(8);
    expect(p.steps).toBe(250);
    expect(p.unetLr).toBeCloseTo(8e-4, 12);
    expect(p.textEncoderLr).toBeCloseTo(4e-4, 12);
    expect(p.warmupSteps).toBe(25);
    expect(p.epochs).toBe(200);
    expect(planRun(cfg({ batchSize: 4, gradAccumulation: 2, lrScaling: 'sqrt' }), 10).unetLr).toBeCloseTo(2.8284271e-4, 10);
    expect(planRun(cfg({ batchSize: 4, gradAccumulation: 2, lrScaling: 'none' }), 10).unetLr).toBe(1e-4);
  });
  it('rounds steps and honours the switches', () => {
    expect(planRun(cfg({ batchSize: 3 }), 5).steps).toBe(667);
    expect(planRun(cfg({ batchSize: 3, divideStepsByBatch: false }), 5).steps).toBe(2000);
    expect(planRun(cfg({ warmup: 50, warmupUnit: 'steps' }), 5).warmupSteps).toBe(50);
    expect(planRun(cfg({ repeats: 10 }), 5).epochs).toBe(40);
  });
  it('refuses warmup longer than the run', () => {
    expect(() => planRun(cfg({ baseSteps: 100, warmup: 500, warmupUnit: 'steps' }), 5)).toThrow(PlanError);
  });
});

describe('config validation', () => {
  it('accepts the defaults and partial input', () => {
    expect(validateConfig({}).ok).toBe(true);
    expect(validateConfig({ batchSize: 2 })).toMatchObject({ ok: true, config: { batchSize: 2, unetLr: 1e-4 } });
  });
  it('reports each bad field in words', () => {
    const r = validateConfig({ unetLr: NaN, batchSize: -1, baseSteps: 2.5, warmup: 1.5, networkDropout: 2, runName: '' });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.unetLr).toMatch(/U-Net learning rate must be a/);
    expect(r.errors.batchSize).toMatch(/between 1 and 64/);
    expect(r.errors.baseSteps).toMatch(/whole number/);
    expect(r.errors.warmup).toMatch(/below 1/);
    expect(r.errors.networkDropout).toMatch(/between 0 and 0.9/);
    expect(r.errors.runName).toMatch(/name/);
  });
  it('refuses caching text-encoder outputs while training it', () => {
    const r = validateConfig({ cacheTextEncoderOutputs: true });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors.cacheTextEncoderOutputs).toMatch(/not trained/);
  });
});

describe('schedules', () => {
  const base = { baseLr: 1, totalSteps: 110, warmupSteps: 10 };
  it('warm up linearly, then follow their curve', () => {
    const cos = makeSchedule({ ...base, kind: 'cosine' });
    expect(cos(0)).toBe(0);
    expect(cos(5)).toBeCloseTo(0.5);
    expect(cos(10)).toBeCloseTo(1);
    expect(cos(60)).toBeCloseTo(0.5);
    expect(cos(110)).toBeCloseTo(0);
    expect(makeSchedule({ ...base, kind: 'linear' })(60)).toBeCloseTo(0.5);
    expect(makeSchedule({ ...base, kind: 'constant_with_warmup' })(100)).toBe(1);
    expect(makeSchedule({ ...base, kind: 'cosine_with_restarts', cycles: 2 })(60)).toBeCloseTo(1);
    expect(makeSchedule({ ...base, kind: 'cosine_with_restarts', cycles: 2 })(35)).toBeCloseTo(0.5);
    expect(makeSchedule({ ...base, kind: 'polynomial', power: 2 })(60)).toBeCloseTo(0.25, 6);
  });
});

describe('noise schedule', () => {
  it('matches the scaled-linear closed form', () => {
    const acp = alphasCumprod();
    expect(acp[0]).toBeCloseTo(1 - 0.00085, 10);
    expect(acp[999]).toBeCloseTo(0.0047, 4);
    expect(alphasCumprod(true)[999]).toBe(0);
    expect(alphasCumprod(true)[0]).toBeCloseTo(acp[0]!, 12);
  });
  it('min-SNR weights', () => {
    const acp = alphasCumprod();
    // early steps have SNR far above 5: weight 5/snr; late steps have SNR below 5: weight 1
    expect(minSnrWeight(acp[10]!, 5, 'epsilon')).toBeCloseTo(5 / (acp[10]! / (1 - acp[10]!)), 10);
    expect(minSnrWeight(acp[900]!, 5, 'epsilon')).toBe(1);
    expect(minSnrWeight(acp[900]!, 5, 'v_prediction')).toBeCloseTo(acp[900]!, 10); // snr/(snr+1) = acp
    expect(minSnrWeight(acp[10]!, 0, 'epsilon')).toBe(1);
  });
  it('the generator is deterministic and normal', () => {
    const a = new Rng(3).normals(20000);
    expect([...new Rng(3).normals(5)]).toEqual([...a.slice(0, 5)]);
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    const v = a.reduce((s, x) => s + (x - mean) ** 2, 0) / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(v - 1)).toBeLessThan(0.03);
  });
});
