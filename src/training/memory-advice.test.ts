// The memory advice on the tiny pipeline's real forecasts, against made-up adapter limits.
import { describe, expect, it } from 'vitest';
import { sizeClass } from '../engine/pool.js';
import { TINY_CLIP, TINY_UNET, TINY_VAE } from '../model/tiny.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';
import { estimateTrainingMemory } from './memory.js';
import { adviseMemory } from './memory-advice.js';

const models = { unet: TINY_UNET, clip: TINY_CLIP, vae: TINY_VAE };
const forecast = (c: TrainConfig) => estimateTrainingMemory(models, c);
const base: TrainConfig = { ...DEFAULT_CONFIG, resolution: 256, batchSize: 2, gradientCheckpointing: false };
const big = { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 2 ** 30 };

describe('adviseMemory', () => {
  it('says nothing when the forecast fits', () => {
    const e = forecast(base);
    const a = adviseMemory(forecast, base, e, big);
    expect(a).toEqual({ largestBufferAllocated: sizeClass(e.largestBuffer), warning: null, suggestions: [], checked: true });
  });

  it('names the per-buffer limit (the smaller of the two, after size-class rounding) and lists only changes that fit', () => {
    const e = forecast(base);
    const limit = sizeClass(e.largestBuffer) - 1; // just under what the pool would allocate
    const a = adviseMemory(forecast, base, e, { maxBufferSize: limit, maxStorageBufferBindingSize: 2 ** 30 });
    expect(a.warning).toMatch(/One buffer needs .* per buffer, so the run cannot start/);
    expect(a.suggestions.length).toBeGreaterThan(0);
    for (const s of a.suggestions) {
      const x = forecast({ ...base, ...s.patch });
      expect(sizeClass(x.largestBuffer)).toBeLessThanOrEqual(limit);
      expect(s.largestBuffer).toBe(x.largestBuffer);
    }
    // Only the largest resolution that fits is offered; the batch change keeps the effective batch.
    expect(a.suggestions.filter((s) => 'resolution' in s.patch).length).toBeLessThanOrEqual(1);
    const batch = a.suggestions.find((s) => 'batchSize' in s.patch);
    if (batch) expect(batch.patch).toEqual({ batchSize: 1, gradAccumulation: 2 });
  });

  it('warns about a peak past the memory budget and suggests what brings it under', () => {
    const e = forecast(base);
    const lower = Math.min(...[{ gradientCheckpointing: true }, { batchSize: 1, gradAccumulation: 2 }, { resolution: 128 }].map((p) => forecast({ ...base, ...p }).peakBytes));
    const budget = Math.floor((lower + e.peakBytes) / 2);
    const a = adviseMemory(forecast, base, e, big, budget);
    expect(a.warning).toMatch(/more than most .* cards have/);
    expect(a.suggestions.length).toBeGreaterThan(0);
    for (const s of a.suggestions) expect(s.peakBytes).toBeLessThanOrEqual(budget);
  });

  it('says so (no suggestions) when nothing can fit', () => {
    const e = forecast(base);
    const a = adviseMemory(forecast, base, e, { maxBufferSize: 1024, maxStorageBufferBindingSize: 1024 });
    expect(a.warning).not.toBeNull();
    expect(a.suggestions).toEqual([]);
    expect(a.checked).toBe(true);
  });

  it('gives only the warning when it may not re-forecast (during a run)', () => {
    const e = forecast(base);
    const a = adviseMemory(null, base, e, { maxBufferSize: 1024, maxStorageBufferBindingSize: 1024 });
    expect(a).toMatchObject({ suggestions: [], checked: false });
    expect(a.warning).toMatch(/cannot start/);
  });
});
