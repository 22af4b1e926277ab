// A 100-step training run on the tiny pipeline leaves the GPU's live buffer count and bytes flat, and dispose frees it all.
import { describe, expect, it } from 'vitest';
import type { PoolStats } from '../engine/pool.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';
import { sampleItems, useTinyPipeline } from './testing.js';
import { Trainer } from './trainer.js';

/**
 * The recipe's defaults (text encoder trained, network dropout, gradient checkpointing, min-SNR,
 * noise offset, flips, saves every tenth of the run) at the smallest size: 64 px (8x8 latents), batch 1.
 * Cost on Dawn/SwiftShader: ~6 min of CPU (427 s wall at load ~10); without the text encoder,
 * checkpointing and dropout ~3.5 min, but those are the default path where a leak would hide.
 */
const config: TrainConfig = { ...DEFAULT_CONFIG, resolution: 64, enableBuckets: false, batchSize: 1, baseSteps: 100, unetLr: 1e-3 };
const STEPS = 100;

const tiny = useTinyPipeline();

describe('training loop memory', () => {
  it(`${STEPS} steps keep live buffers and bytes flat; dispose returns to the pipeline alone`, async () => {
    await tiny.backend.sync();
    const before = tiny.backend.pool();
    // Pool counters as each step's metrics arrive (one step late, the next step already encoded, except
    // at saves and the end, where nothing is in flight: those steps are compared among themselves).
    const seen = new Map<number, PoolStats>();
    const t = new Trainer(tiny.pipeline, config, sampleItems(2), { onMetrics: (m) => seen.set(m.step, tiny.backend.pool()) });
    expect(t.plan.steps).toBe(STEPS);
    await t.run();
    expect([...seen.keys()]).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    const quiet = (s: number) => s % t.plan.saveEvery === 0 || s === STEPS;
    for (const group of [(s: number) => !quiet(s), quiet]) {
      const steps = [...seen.keys()].filter((s) => s >= 5 && group(s));
      const first = seen.get(steps[0]!)!;
      // No growth at all: every buffer a step allocates is released by the same point of a later step.
      for (const s of steps) {
        const p = seen.get(s)!;
        expect({ step: s, buffers: p.liveBuffers, bytes: p.liveBytes }).toEqual({ step: s, buffers: first.liveBuffers, bytes: first.liveBytes });
      }
    }
    t.dispose();
    const after = tiny.backend.pool();
    expect({ buffers: after.liveBuffers, bytes: after.liveBytes }).toEqual({ buffers: before.liveBuffers, bytes: before.liveBytes });
  }, 20 * 60_000);
});
