// Encoding cost of a training step: the JS time to record one tiny-pipeline step, per dispatch, GPU time left out.
import type { GpuBackend } from '../engine/backend.js';
import type { Kernel } from '../engine/kernel.js';
import type { Binding } from '../engine/backend.js';
import { DEFAULT_CONFIG } from '../training/config.js';
import { Rng } from '../training/rng.js';
import { sampleItems, tinyPipeline } from '../training/testing.js';
import { Trainer } from '../training/trainer.js';

/** One row of figures: what `npm run bench -- --encode` prints. */
export interface EncodeFigures {
  name: string;
  dispatchesPerStep: number;
  /** JS time of `Trainer.optimizerStep` (the ops' own code and the backend's), per dispatch. */
  stepUsPerDispatch: number;
  /** Time inside `GpuBackend.run` (pipeline lookup, bind group, uniforms, pass commands, submits), per dispatch. */
  runUsPerDispatch: number;
  bindGroups: number;
  steps: number;
}

/**
 * Time `steps` optimizer steps of the tiny pipeline (batch 1, 64², text encoder trained) after two
 * warm-up steps with every pipeline compiled. Each step's encoding is timed up to its return, then
 * the GPU is awaited outside the clock, so the figures are the CPU's recording cost only.
 */
export async function benchEncode(b: GpuBackend, steps = 5): Promise<EncodeFigures> {
  const pipeline = await tinyPipeline(b);
  const t = new Trainer(pipeline, { ...DEFAULT_CONFIG, resolution: 64, enableBuckets: false, baseSteps: 1000, sampleSteps: 0 }, sampleItems(1));
  await t.cacheLatents();
  await t.precompile();
  const micro = [[t.makeSample(0, new Rng(1))]];
  for (let i = 0; i < 2; i++) await t.optimizerStep(micro);
  let runMs = 0;
  const run = b.run.bind(b);
  b.run = (k: Kernel, bindings: Binding[]) => {
    const a = performance.now();
    run(k, bindings);
    runMs += performance.now() - a;
  };
  let stepMs = 0;
  b.resetStats();
  try {
    for (let i = 0; i < steps; i++) {
      const a = performance.now();
      const done = t.optimizerStep(micro);
      stepMs += performance.now() - a;
      await done;
    }
  } finally {
    b.run = run;
  }
  const n = b.stats.dispatches;
  t.dispose();
  return { name: 'encode tiny training step', dispatchesPerStep: n / steps, stepUsPerDispatch: +((stepMs * 1000) / n).toFixed(2), runUsPerDispatch: +((runMs * 1000) / n).toFixed(2), bindGroups: b.bindGroupCount, steps };
}
