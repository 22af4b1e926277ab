// Pipelines compiled before the first step: on the tiny pipeline, the steps then compile nothing new.
import { describe, expect, it } from 'vitest';
import { testBackend } from '../engine/testing/gpu.js';
import { DEFAULT_CONFIG } from './config.js';
import { sampleItems, tinyPipeline } from './testing.js';
import { Trainer } from './trainer.js';

describe('precompiling a run', () => {
  it('compiles every pipeline of the steps beforehand, with progress to the total; the steps add none', async () => {
    const b = await testBackend();
    const pipeline = await tinyPipeline(b);
    // One image, one shape: each shape compiles ~100 pipelines of minutes' worth on a software GPU (4 shapes took 17 min).
    const items = sampleItems(1);
    const c = { ...DEFAULT_CONFIG, resolution: 64, enableBuckets: false, batchSize: 1, baseSteps: 2, sampleSteps: 0, networkDropout: 0.1 };
    const progress: [number, number][] = [];
    let afterPrecompile = -1;
    const sizes: number[] = [];
    const t = new Trainer(pipeline, c, items, {
      onCompile: (done, total) => {
        progress.push([done, total]);
        if (done === total) afterPrecompile = b.pipelines.size;
      },
      onMetrics: () => sizes.push(b.pipelines.size),
    });
    const before = b.pipelines.size;
    await t.cacheLatents();
    const cached = b.pipelines.size;
    const t0 = performance.now();
    await t.run();
    const total = progress[0]![1];
    console.log(`tiny pipeline: VAE encoding compiled ${cached - before} pipelines; precompile ${total} more in ${((performance.now() - t0) / 1000).toFixed(1)} s (run included); steps after it: ${sizes.map((s) => s - afterPrecompile).join(', ')} new`);
    expect(total).toBeGreaterThan(20);
    expect(progress[0]).toEqual([0, total]);
    expect(progress.at(-1)).toEqual([total, total]);
    expect(afterPrecompile - cached).toBe(total);
    expect(sizes.length).toBe(t.plan.steps);
    expect(t.plan.steps).toBeGreaterThan(1);
    for (const s of sizes) expect(s).toBe(afterPrecompile);
    expect(b.pipelines.size).toBe(afterPrecompile);
    t.dispose();
  }, 20 * 60_000);
});
