// The memory estimate on the meta device: SD 1.5 at 512 fits a consumer GPU, settings move it the way they should,
// and on the tiny pipeline it matches what the GPU's pool really holds, on a device at WebGPU's default 128 MiB binding limit.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../engine/gpu.js';
import { limitedNodeGpu } from '../engine/node.js';
import { BufferLimitError } from '../engine/pool.js';
import { empty } from '../engine/tensor.js';
import { SD15_CLIP } from '../model/clip.js';
import type { Pipeline } from '../model/pipeline.js';
import { SD15_UNET } from '../model/unet.js';
import { SD15_VAE } from '../model/vae.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';
import { estimateTrainingMemory } from './memory.js';
import { sampleItems, tinyPipeline } from './testing.js';
import { Trainer } from './trainer.js';

const sd15 = { unet: SD15_UNET, clip: SD15_CLIP, vae: SD15_VAE };
const gib = (b: number) => b / 2 ** 30;
const est = (p: Partial<TrainConfig>) => estimateTrainingMemory(sd15, { ...DEFAULT_CONFIG, ...p });

describe('estimateTrainingMemory', () => {
  it('SD 1.5 at 512, batch 1, rank 16, checkpointing: under 6 GiB, weights about 1.9 GiB in f16', () => {
    const e = est({ batchSize: 1, trainTextEncoder: true, gradientCheckpointing: true });
    console.log(
      `SD 1.5 LoRA run at 512 (batch 1, TE trained, checkpointing): peak held ${gib(e.peakBytes).toFixed(2)} GiB (live ${gib(e.peakLiveBytes).toFixed(2)} + cache ${gib(e.cacheBytes).toFixed(2)}), weights ${gib(e.weightBytes).toFixed(2)} GiB, ` +
        `network+grads+AdamW ${(e.networkBytes / 2 ** 20).toFixed(1)} MiB, largest buffer ${(e.largestBuffer / 2 ** 20).toFixed(1)} MiB, ${(e.flopsPerStep / 1e12).toFixed(2)} TFLOP/step`,
    );
    // 859.5M + 123.1M + 83.7M parameters at 2 bytes.
    expect(gib(e.weightBytes)).toBeGreaterThan(1.95);
    expect(gib(e.weightBytes)).toBeLessThan(2.0);
    expect(e.peakLiveBytes).toBeGreaterThan(e.weightBytes + e.networkBytes);
    expect(e.peakBytes).toBe(e.peakLiveBytes + e.cacheBytes);
    expect(gib(e.peakBytes)).toBeLessThan(6);
    // The largest buffer, after size-class rounding, must fit WebGPU's default 128 MiB binding limit.
    expect(e.largestBuffer).toBeLessThanOrEqual(128 * 2 ** 20);
  });

  it('grows with the batch, shrinks with checkpointing, and counts the optimizer state', () => {
    const base = { trainTextEncoder: false, gradientCheckpointing: true, resolution: 512 };
    const b1 = est({ ...base, batchSize: 1 });
    const b2 = est({ ...base, batchSize: 2 });
    const noCkpt = est({ ...base, batchSize: 1, gradientCheckpointing: false });
    const lion = est({ ...base, batchSize: 1, optimizer: 'lion' });
    expect(b2.peakBytes).toBeGreaterThan(b1.peakBytes);
    expect(noCkpt.peakBytes).toBeGreaterThan(b1.peakBytes);
    expect(lion.networkBytes).toBeLessThan(b1.networkBytes);
    // AdamW: params + grads + 2 moments = 4 copies; Lion: 3.
    expect(lion.networkBytes / b1.networkBytes).toBeCloseTo(3 / 4, 5);
    // Accumulation does not add activation memory: micro-batches run one after the other.
    const acc = est({ ...base, batchSize: 1, gradAccumulation: 2 });
    expect(acc.peakBytes).toBe(b1.peakBytes);
    expect(acc.flopsPerStep / b1.flopsPerStep).toBeCloseTo(2, 3); // two micro-steps, one optimizer update
  });
});

const MiB = 2 ** 20;
const tinyBase: Partial<TrainConfig> = { resolution: 64, enableBuckets: false, trainTextEncoder: false, networkDropout: 0, flipAug: false, unetLr: 1e-3, baseSteps: 3 };

describe('forecast against the GPU on the tiny pipeline, at a 128 MiB binding limit', () => {
  let gpu: Gpu;
  let pipeline: Pipeline;
  beforeAll(async () => {
    gpu = await limitedNodeGpu({ maxStorageBufferBindingSize: 128 * MiB });
    pipeline = await tinyPipeline(gpu.backend);
  }, 10 * 60_000);

  for (const [batchSize, gradientCheckpointing] of [[1, false], [2, false], [1, true], [2, true]] as const) {
    it(`batch ${batchSize}${gradientCheckpointing ? ', checkpointing' : ''}: the forecast held peak is within 10% of the pool's measured one`, async () => {
      const b = gpu.backend;
      const c: TrainConfig = { ...DEFAULT_CONFIG, ...tinyBase, batchSize, gradientCheckpointing };
      const e = estimateTrainingMemory({ unet: pipeline.unet.config, clip: pipeline.clip.config, vae: pipeline.vae.config }, c);
      // Start where the forecast starts: weights loaded, nothing cached, then the run's LoRA.
      await b.sync();
      b.setCacheLimit(0);
      b.setCacheLimit(e.cacheLimit);
      const t = new Trainer(pipeline, c, sampleItems(2 * batchSize));
      b.resetPeak();
      await t.run();
      const s = b.pool();
      t.dispose();
      const ratio = e.peakBytes / s.peakHeldBytes;
      console.log(
        `tiny, batch ${batchSize}, checkpointing ${gradientCheckpointing}: forecast held ${(e.peakBytes / MiB).toFixed(2)} MiB (live ${(e.peakLiveBytes / MiB).toFixed(2)}), ` +
          `measured held ${(s.peakHeldBytes / MiB).toFixed(2)} MiB (live ${(s.peakLiveBytes / MiB).toFixed(2)}): ratio ${ratio.toFixed(3)}`,
      );
      expect(ratio).toBeGreaterThan(0.9);
      expect(ratio).toBeLessThan(1.1);
      expect(s.largestBuffer).toBeLessThanOrEqual(128 * MiB);
    }, 10 * 60_000);
  }

  it('refuses an allocation beyond the binding limit, after rounding, before asking the GPU', async () => {
    const b = gpu.backend;
    const held = b.pool().heldBytes;
    expect(() => empty(b, [33 * MiB])).toThrow(BufferLimitError);
    expect(() => empty(b, [33 * MiB])).toThrow(/132\.0 MiB tensor needs a 144\.0 MiB buffer, but this GPU's maxStorageBufferBindingSize is 128\.0 MiB/);
    expect(b.pool().heldBytes).toBe(held);
    await b.sync();
  });
});
