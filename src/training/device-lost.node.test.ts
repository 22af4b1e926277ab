// A GPU lost mid-run (a driver reset; here the device destroyed on purpose) ends the run with an
// error naming the step and the last saved LoRA, instead of hanging or failing opaquely.
// It destroys this process's device, so it has a test file of its own.
import { describe, expect, it } from 'vitest';
import { GpuBackend } from '../engine/backend.js';
import { nodeGpu } from '../engine/node.js';
import { DEFAULT_CONFIG } from './config.js';
import { sampleItems, tinyPipeline } from './testing.js';
import { DeviceLostDuringTrainingError, Trainer } from './trainer.js';

describe('device lost during training', () => {
  it('stops the run with the step, the last save and what to do', async () => {
    const { device } = await nodeGpu();
    const backend = new GpuBackend(device);
    const pipeline = await tinyPipeline(backend);
    const saves: number[] = [];
    const t = new Trainer(
      pipeline,
      { ...DEFAULT_CONFIG, resolution: 64, enableBuckets: false, trainTextEncoder: false, baseSteps: 20, saveEvery: 2 },
      sampleItems(1),
      {
        onCheckpoint: (_f, step) => saves.push(step),
        onMetrics: (m) => m.step === 3 && device.destroy(),
      },
    );
    const err = await t.run().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceLostDuringTrainingError);
    const e = err as DeviceLostDuringTrainingError;
    expect(saves).toEqual([2]);
    expect(e.lastSavedStep).toBe(2);
    expect(e.step).toBeGreaterThanOrEqual(3);
    expect(e.message).toMatch(/GPU device was lost \(destroyed\)\. Training stopped at step \d+\. The LoRA saved at step 2 is kept/);
    expect(e.message).toContain('Continue an earlier LoRA');
  }, 20 * 60_000);
});
