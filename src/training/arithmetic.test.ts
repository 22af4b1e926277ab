// The recipe's run arithmetic: steps, scaled LRs, warmup, epochs and cadences from the settings, and the plans it refuses.
import { describe, expect, it } from 'vitest';
import { lrFactor, optimizerSteps, planRun, planSchedules, PlanError, roundHalfEven, warmupSteps } from './arithmetic.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';

const cfg = (o: Partial<TrainConfig> = {}): TrainConfig => ({ ...DEFAULT_CONFIG, ...o });

describe('the recipe arithmetic', () => {
  it('defaults: 2000 steps at LR 1e-4 / 5e-5, 200 warmup steps, saves every 200', () => {
    expect(planRun(cfg(), 20)).toEqual({
      effectiveBatch: 1,
      steps: 2000,
      lrFactor: 1,
      unetLr: 1e-4,
      textEncoderLr: 5e-5,
      warmupSteps: 200,
      imagesPerEpoch: 20,
      microBatchesPerEpoch: 20,
      epochs: 100,
      saveEvery: 200,
      sampleEvery: 200,
      validateEvery: 0,
    });
  });
  it('batch 4 x accumulation 2: effective 8, 250 steps, LR 8e-4 linear / 2.828e-4 sqrt / 1e-4 none, warmup 25', () => {
    const p = planRun(cfg({ batchSize: 4, gradAccumulation: 2 }), 10);
    expect(p.effectiveBatch).toBe(8);
    expect(p.steps).toBe(250);
    expect(p.unetLr).toBeCloseTo(8e-4, 15);
    expect(p.textEncoderLr).toBeCloseTo(4e-4, 15);
    expect(p.warmupSteps).toBe(25);
    expect(p.microBatchesPerEpoch).toBe(3); // ceil(10 / 4)
    expect(p.epochs).toBe(200); // ceil(250 * 8 / 10)
    expect(p.saveEvery).toBe(25);
    const sqrt = planRun(cfg({ batchSize: 4, gradAccumulation: 2, lrScaling: 'sqrt' }), 10);
    expect(sqrt.unetLr).toBeCloseTo(2.8284271247461903e-4, 15);
    expect(sqrt.textEncoderLr).toBeCloseTo(1.4142135623730951e-4, 15);
    expect(planRun(cfg({ batchSize: 4, gradAccumulation: 2, lrScaling: 'none' }), 10).unetLr).toBe(1e-4);
  });
  it('rounds steps to the nearest, halves to even as the guide does', () => {
    expect(optimizerSteps(cfg({ batchSize: 3 }))).toBe(667); // 666.67
    expect(optimizerSteps(cfg({ batchSize: 8, gradAccumulation: 4 }))).toBe(62); // 62.5
    expect(optimizerSteps(cfg({ baseSteps: 2024, batchSize: 16 }))).toBe(126); // 126.5
    expect(optimizerSteps(cfg({ batchSize: 64, gradAccumulation: 256 }))).toBe(1); // never 0
    expect(optimizerSteps(cfg({ batchSize: 3, divideStepsByBatch: false }))).toBe(2000);
    expect([0.5, 1.5, 2.5, 2.4999, 2.5001, 3].map(roundHalfEven)).toEqual([0, 2, 2, 2, 3, 3]);
  });
});

describe('the recipe arithmetic: warmup, epochs, cadence, Prodigy', () => {
  it('warmup: round(steps x fraction) or steps as given', () => {
    expect(warmupSteps(cfg(), 125)).toBe(12); // 12.5 -> 12
    expect(warmupSteps(cfg({ warmup: 0.05 }), 250)).toBe(12); // 12.5 -> 12
    expect(warmupSteps(cfg({ warmup: 0 }), 250)).toBe(0);
    expect(warmupSteps(cfg({ warmup: 50, warmupUnit: 'steps' }), 250)).toBe(50);
    expect(warmupSteps(cfg({ warmup: 250, warmupUnit: 'steps' }), 250)).toBe(250); // as long as the run is allowed
  });
  it('epochs count images seen over images per epoch, with repeats', () => {
    expect(planRun(cfg({ repeats: 10 }), 5).epochs).toBe(40); // 2000 / 50
    expect(planRun(cfg({ repeats: 3 }), 7).epochs).toBe(96); // ceil(2000 / 21)
    expect(planRun(cfg({ batchSize: 2 }), 3)).toMatchObject({ steps: 1000, imagesPerEpoch: 3, microBatchesPerEpoch: 2, epochs: 667 });
    expect(planRun(cfg(), 0)).toMatchObject({ imagesPerEpoch: 0, microBatchesPerEpoch: 0, epochs: 0 });
  });
  it('save and sample cadence: a tenth of the run unless set', () => {
    expect(planRun(cfg({ baseSteps: 12 }), 3)).toMatchObject({ steps: 12, saveEvery: 1, sampleEvery: 1 });
    expect(planRun(cfg({ baseSteps: 5 }), 3)).toMatchObject({ saveEvery: 1 }); // round(0.5) = 0, at least 1
    expect(planRun(cfg({ saveEvery: 30, sampleEvery: 70 }), 3)).toMatchObject({ saveEvery: 30, sampleEvery: 70 });
  });
  it('Prodigy is not scaled: its LR is a multiplier', () => {
    expect(lrFactor({ lrScaling: 'linear', optimizer: 'prodigy' }, 8)).toBe(1);
    expect(planRun(cfg({ optimizer: 'prodigy', unetLr: 1, textEncoderLr: 1, batchSize: 4 }), 4)).toMatchObject({ unetLr: 1, lrFactor: 1 });
  });
});

describe('impossible plans', () => {
  const field = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (e instanceof PlanError) return [e.field, e.message];
      throw e;
    }
    return null;
  };
  it('name the field', () => {
    expect(field(() => planRun(cfg({ baseSteps: 100, warmup: 500, warmupUnit: 'steps' }), 5))).toEqual(['warmup', 'Warmup (500 steps) is longer than the run (100 steps)']);
    expect(field(() => planRun(cfg({ warmup: 1 }), 5))?.[1]).toMatch(/below 1/);
    expect(field(() => planRun(cfg({ warmup: 1.5 }), 5))?.[0]).toBe('warmup');
    expect(field(() => planRun(cfg({ warmup: 2.5, warmupUnit: 'steps' }), 5))?.[1]).toMatch(/whole number/);
    expect(field(() => planRun(cfg({ scheduler: 'constant' }), 5))?.[1]).toMatch(/constant schedule has no warmup/);
    expect(field(() => planRun(cfg(), -1))?.[0]).toBe('numImages');
    expect(field(() => planRun(cfg(), 2.5))?.[0]).toBe('numImages');
    expect(field(() => planRun(cfg({ scheduler: 'constant', warmup: 0 }), 5))).toBeNull();
  });
});

describe('planSchedules', () => {
  it('builds both schedules from the plan; a frozen text encoder gets 0', () => {
    const c = cfg({ batchSize: 2 });
    const p = planRun(c, 4);
    const s = planSchedules(c, p);
    expect(s.unet(p.warmupSteps)).toBeCloseTo(2e-4, 18);
    expect(s.textEncoder(p.warmupSteps)).toBeCloseTo(1e-4, 18);
    expect(s.unet(p.warmupSteps / 2)).toBeCloseTo(1e-4, 18);
    expect(planSchedules(cfg({ trainTextEncoder: false }), planRun(cfg(), 4)).textEncoder(500)).toBe(0);
  });
});

describe('per-folder repeats (kohya N_ folders)', () => {
  it('sum each image’s own repeats; images without one take the Repeats setting', () => {
    // 10_cat (1 image), 5_coffee (1 image) and one loose image at the setting's 2: 10 + 5 + 2 per epoch.
    const p = planRun(cfg({ repeats: 2, batchSize: 2 }), [{ repeats: 10 }, { repeats: 5 }, {}]);
    expect(p).toMatchObject({ imagesPerEpoch: 17, microBatchesPerEpoch: 9, epochs: Math.ceil((1000 * 2) / 17) });
    expect(planRun(cfg({ repeats: 3 }), [{}, {}, {}, {}, {}, {}, {}])).toEqual(planRun(cfg({ repeats: 3 }), 7));
    expect(planRun(cfg(), [])).toMatchObject({ imagesPerEpoch: 0, epochs: 0 });
    expect(() => planRun(cfg(), [{ repeats: 0 }])).toThrow(PlanError);
  });
});
