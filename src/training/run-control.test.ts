// The run as the page drives it, on the tiny pipeline: Stop during latent encoding ends it between images and
// saves nothing; steps/s and the ETA leave out the time spent outside steps (saves, previews).
import { beforeAll, describe, expect, it } from 'vitest';
import type { GpuBackend } from '../engine/backend.js';
import { testBackend } from '../engine/testing/gpu.js';
import type { Pipeline } from '../model/pipeline.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';
import { sampleItems, tinyPipeline } from './testing.js';
import { RunControl, Trainer, type StepMetrics } from './trainer.js';

const base: Partial<TrainConfig> = { resolution: 64, enableBuckets: false, trainTextEncoder: false, gradientCheckpointing: false, networkDropout: 0, flipAug: false, sampleSteps: 0 };

let backend: GpuBackend;
let pipeline: Pipeline;
beforeAll(async () => {
  backend = await testBackend();
  pipeline = await tinyPipeline(backend);
}, 10 * 60_000);

describe('Stop before the first step', () => {
  it('ends latent encoding at the next image and saves no LoRA', async () => {
    const saves: number[] = [];
    const t = new Trainer(pipeline, { ...DEFAULT_CONFIG, ...base, baseSteps: 4 }, sampleItems(5), { onCheckpoint: (_f, step) => saves.push(step) });
    const control = new RunControl();
    const progress: number[] = [];
    const complete = await t.cacheLatents((done) => {
      progress.push(done);
      if (done === 2) control.stop();
    }, control);
    expect(complete).toBe(false);
    expect(progress).toEqual([1, 2]);
    await t.run(control);
    expect(t.step).toBe(0);
    expect(saves).toEqual([]);
    t.dispose();
  }, 10 * 60_000);
});

describe('steps per second', () => {
  it('leave out the time outside steps (saves here; previews are timed the same way)', async () => {
    const metrics: { m: StepMetrics; at: number }[] = [];
    const busyMs = 800;
    const t = new Trainer(pipeline, { ...DEFAULT_CONFIG, ...base, baseSteps: 4, saveEvery: 1 }, sampleItems(2), {
      onMetrics: (m) => metrics.push({ m, at: performance.now() }),
      // A slow consumer of each save: its time is the save's, not the steps'.
      onCheckpoint: () => {
        const end = performance.now() + busyMs;
        while (performance.now() < end);
      },
    });
    await t.cacheLatents();
    await t.run();
    expect(metrics.map((x) => x.m.step)).toEqual([1, 2, 3, 4]);
    // Wall time between reports holds a step, a save and its slow consumer; the rate counts only the step.
    const walls = metrics.slice(1).map((x, i) => x.at - metrics[i]!.at);
    const last = metrics.at(-1)!.m;
    const stepMs = 1000 / last.stepsPerSec;
    console.log(`ms between reports ${walls.map((w) => w.toFixed(0)).join(', ')}; reported ${stepMs.toFixed(0)} ms per step`);
    expect(Math.min(...walls)).toBeGreaterThan(busyMs);
    expect(stepMs).toBeLessThan(Math.min(...walls) - busyMs * 0.75);
    t.dispose();
  }, 10 * 60_000);
});
