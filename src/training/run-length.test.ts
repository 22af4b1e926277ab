// Run length given in epochs (kohya's max_train_epochs) instead of steps: the arithmetic planRun does.
import { describe, expect, it } from 'vitest';
import { planRun } from './arithmetic.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';

const cfg = (o: Partial<TrainConfig> = {}): TrainConfig => ({ ...DEFAULT_CONFIG, ...o });

describe('a run given in epochs', () => {
  it('is epochs x updates per epoch, whatever baseSteps says', () => {
    // 10 images x 3 repeats = 30 per epoch; batch 4: 8 passes (the last one short); accumulation 2: 4 updates.
    const p = planRun(cfg({ maxEpochs: 5, baseSteps: 2000, repeats: 3, batchSize: 4, gradAccumulation: 2 }), 10);
    expect(p).toMatchObject({ steps: 20, epochs: 5, imagesPerEpoch: 30, microBatchesPerEpoch: 8, saveEvery: 2, warmupSteps: 2 });
  });
  it('at batch 1 one epoch is one step per image and repeat', () => {
    expect(planRun(cfg({ maxEpochs: 1 }), 3)).toMatchObject({ steps: 3, epochs: 1 });
    expect(planRun(cfg({ maxEpochs: 10, repeats: 10 }), 7)).toMatchObject({ steps: 700, epochs: 10 });
  });
  it('a partial last update counts as one; never fewer than 1 step', () => {
    expect(planRun(cfg({ maxEpochs: 2, batchSize: 2, gradAccumulation: 4 }), 3).steps).toBe(2); // 2 passes -> 1 update per epoch
    expect(planRun(cfg({ maxEpochs: 2 }), 0).steps).toBe(1);
  });
  it('0 epochs keeps the step arithmetic', () => {
    expect(planRun(cfg({ maxEpochs: 0, batchSize: 2 }), 5)).toMatchObject({ steps: 1000, epochs: 400 });
  });
});
