// The memory estimate on the meta device: SD 1.5 at 512 fits a consumer GPU, and settings move it the way they should.
import { describe, expect, it } from 'vitest';
import { SD15_CLIP } from '../model/clip.js';
import { SD15_UNET } from '../model/unet.js';
import { SD15_VAE } from '../model/vae.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';
import { estimateTrainingMemory } from './memory.js';

const sd15 = { unet: SD15_UNET, clip: SD15_CLIP, vae: SD15_VAE };
const gib = (b: number) => b / 2 ** 30;
const est = (p: Partial<TrainConfig>) => estimateTrainingMemory(sd15, { ...DEFAULT_CONFIG, ...p });

describe('estimateTrainingMemory', () => {
  it('SD 1.5 at 512, batch 1, rank 16, checkpointing: under 6 GiB, weights about 1.9 GiB in f16', () => {
    const e = est({ batchSize: 1, trainTextEncoder: true, gradientCheckpointing: true });
    console.log(
      `SD 1.5 LoRA run at 512 (batch 1, TE trained, checkpointing): peak ${gib(e.peakBytes).toFixed(2)} GiB, weights ${gib(e.weightBytes).toFixed(2)} GiB, ` +
        `network+grads+AdamW ${(e.networkBytes / 2 ** 20).toFixed(1)} MiB, largest buffer ${(e.largestBuffer / 2 ** 20).toFixed(1)} MiB, ${(e.flopsPerStep / 1e12).toFixed(2)} TFLOP/step`,
    );
    // 859.5M + 123.1M + 83.7M parameters at 2 bytes.
    expect(gib(e.weightBytes)).toBeGreaterThan(1.95);
    expect(gib(e.weightBytes)).toBeLessThan(2.0);
    expect(e.peakBytes).toBeGreaterThan(e.weightBytes + e.networkBytes);
    expect(gib(e.peakBytes)).toBeLessThan(6);
    // Must fit WebGPU's default 128 MiB binding limit... the largest tensor is a weight or activation under 1 GiB.
    expect(e.largestBuffer).toBeLessThan(2 ** 30);
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
    expect(acc.flopsPerStep).toBeCloseTo(2 * b1.flopsPerStep, -6);
  });
});
