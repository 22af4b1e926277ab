// The page's store starts with the tiny demo preset, and loading the demo keeps it (one preset for the store, the model panel's size and the CLI).
import { describe, expect, it } from 'vitest';
import { TINY_DEMO_PRESET, TINY_DEMO_SIZE, TINY_RESOLUTION } from '../model/tiny.js';
import { bucketSideLimits } from '../training/buckets.js';
import { DEFAULT_CONFIG, validateConfig } from '../training/config.js';
import { applyModelSize, useApp } from './store.js';

describe('the tiny demo preset', () => {
  it('is what the page starts with, and valid', () => {
    expect(useApp.getState().config).toEqual({ ...DEFAULT_CONFIG, ...TINY_DEMO_PRESET });
    expect(validateConfig(useApp.getState().config).ok).toBe(true);
  });
  it('has the bucket sides the recipe derives at its resolution, so loading the demo changes nothing', () => {
    const { min, max } = bucketSideLimits(TINY_RESOLUTION, DEFAULT_CONFIG.maxAspect, DEFAULT_CONFIG.bucketStep);
    expect([TINY_DEMO_SIZE.minBucket, TINY_DEMO_SIZE.maxBucket]).toEqual([min, max]);
    expect(applyModelSize('tiny demo', TINY_RESOLUTION)).toBeNull();
    expect(useApp.getState().config).toMatchObject(TINY_DEMO_SIZE);
  });
});
