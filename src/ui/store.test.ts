// The page's store starts with the tiny demo preset, and loading the demo keeps it (one preset for the store, the model panel's size and the CLI).
import { describe, expect, it } from 'vitest';
import { bucketSideLimits, DEFAULT_CONFIG, TINY_DEMO_PRESET, TINY_RESOLUTION } from '../protocol/index.js';
import { applyModelSize, useApp } from './store.js';

describe('the tiny demo preset', () => {
  it("is what the page starts with, at the demo's native resolution", () => {
    expect(useApp.getState().config).toEqual({ ...DEFAULT_CONFIG, ...TINY_DEMO_PRESET });
    expect(TINY_DEMO_PRESET.resolution).toBe(TINY_RESOLUTION);
  });
  it('has the bucket sides the recipe derives at its resolution, so loading the demo changes nothing', () => {
    const { min, max } = bucketSideLimits(TINY_RESOLUTION, DEFAULT_CONFIG.maxAspect, DEFAULT_CONFIG.bucketStep);
    expect([TINY_DEMO_PRESET.minBucket, TINY_DEMO_PRESET.maxBucket]).toEqual([min, max]);
    expect(applyModelSize('tiny demo', TINY_RESOLUTION)).toBeNull();
    expect(useApp.getState().config).toMatchObject(TINY_DEMO_PRESET);
  });
});
