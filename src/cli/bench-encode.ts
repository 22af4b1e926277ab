// Encoding cost of a training step: the JS time to record one tiny-pipeline step, per dispatch, GPU time left out.
import type { GpuBackend } from '../engine/backend.js';
import type { Kernel } from '../engine/kernel.js';
import type { Binding } from '../engine/backend.js';
import type { Pipeline } from '../model/pipeline.js';
import { DEFAULT_CONFIG } from '../training/config.js';
import type { TrainItem } from '../training/data.js';
import { Rng } from '../training/rng.js';
import { Trainer } from '../training/trainer.js';

/** One row of figures: what `npm run bench -- --encode` prints. */
export interface EncodeFigures {
  name: string;
  dispatchesPerStep: number;
  /**
   * JS time of `Trainer.optimizerStep` (the ops' own code and the backend's) less its submits, per
   * dispatch, with and without the bind group cache.
   */
  stepUsPerDispatch: number;
  stepUsPerDispatchNoCache: number;
  /** Time inside `GpuBackend.run` (pipeline lookup, bind group, uniforms, pass commands, submits), per dispatch. */
  runUsPerDispatch: number;
  runUsPerDispatchNoCache: number;
  /**
   * The same step replayed from its recorded plan (training/replay-step.ts; bind group cache on):
   * the whole step's JS (its declared values included) less its submits, per dispatch.
   */
  replayUsPerDispatch: number;
  /** Steps of the replay rows that replayed (the rest were recorded). */
  replayed: number;
  /** JS time of the step's submits (`flush`: uniform upload, finish, submit), per dispatch. */
  submitUsPerDispatch: number;
  /** Submits per timed step: one for the dispatches, plus one per upload the step makes (a write submits first). */
  submitsPerStep: number;
  /** Share of the measured dispatches whose bind group came from the cache. */
  bindGroupHitRate: number;
  bindGroups: number;
  steps: number;
}

/** The tiny pipeline and one training image: read from the repository's files in Node, fetched in a page. */
export interface EncodeInput {
  pipeline: Pipeline;
  items: TrainItem[];
}

/** The Node input; imported when needed, so that a page can run the bench with its own. */
async function nodeInput(b: GpuBackend): Promise<EncodeInput> {
  const { sampleItems, tinyPipeline } = await import('../training/testing.js');
  return { pipeline: await tinyPipeline(b), items: sampleItems(1) };
}

/**
 * Time 2 x `steps` optimizer steps of the tiny pipeline (batch 1, 64², text encoder trained) after two
 * warm-up steps with every pipeline compiled and (cache on) the bind groups made. Each step's
 * encoding is timed up to its return, then the GPU is awaited outside the clock, so the figures are
 * the CPU's recording cost only. The timed
 * steps submit only at the step's uploads and end, not every 512 dispatches: a submit starts the
 * software GPU's threads, which on a 2-core machine would slow the JS still encoding; and the
 * submits' own JS time is measured apart.
 */
export async function benchEncode(b: GpuBackend, steps = 5, input?: EncodeInput): Promise<EncodeFigures> {
  const { pipeline, items } = input ?? (await nodeInput(b));
  const t = new Trainer(pipeline, { ...DEFAULT_CONFIG, resolution: 64, enableBuckets: false, baseSteps: 1000, sampleSteps: 0 }, items);
  await t.cacheLatents();
  await t.precompile();
  const micro = [[t.drawExample(0, new Rng(1))]];
  // Raised before the warm-up: growing the uniform arena drops the cached bind groups (they bind it).
  const maxDispatches = b.maxDispatchesPerSubmit;
  const cacheWas = b.cacheBindGroups;
  b.maxDispatchesPerSubmit = 1 << 16;
  b.cacheBindGroups = true;
  t.replay = false;
  for (let i = 0; i < 2; i++) await t.optimizerStep(micro);
  // Two recorded steps make the plan the replay rows use.
  t.replay = true;
  for (let i = 0; i < 2; i++) await t.optimizerStep(micro);
  const replayed0 = t.replayer?.counters.replayed ?? 0;
  // Steps take turns: bind group cache on, off, then replayed (A B C A B C), so load changes hit all alike.
  const ms = { on: { step: 0, run: 0, flush: 0, n: 0 }, off: { step: 0, run: 0, flush: 0, n: 0 }, replay: { step: 0, run: 0, flush: 0, n: 0 } };
  let cur = ms.on;
  const run = b.run.bind(b);
  b.run = (k: Kernel, bindings: Binding[]) => {
    const a = performance.now();
    run(k, bindings);
    cur.run += performance.now() - a;
  };
  const flush = b.flush.bind(b);
  let flushMs = 0;
  b.flush = () => {
    const a = performance.now();
    flush();
    flushMs += performance.now() - a;
  };
  let hits = 0;
  let submits = 0;
  try {
    for (let i = 0; i < 3 * steps; i++) {
      cur = [ms.on, ms.off, ms.replay][i % 3]!;
      b.cacheBindGroups = cur !== ms.off;
      t.replay = cur === ms.replay;
      const d0 = b.stats.dispatches;
      const g0 = b.bindGroupCount;
      flushMs = 0;
      const s1 = b.stats.submits;
      const a = performance.now();
      const done = t.optimizerStep(micro);
      cur.step += performance.now() - a - flushMs;
      cur.flush += flushMs;
      const n = b.stats.dispatches - d0;
      cur.n += n;
      if (cur === ms.on) hits += n - (b.bindGroupCount - g0);
      submits += b.stats.submits - s1;
      await done;
    }
  } finally {
    b.run = run;
    b.flush = flush;
    b.maxDispatchesPerSubmit = maxDispatches;
    b.cacheBindGroups = cacheWas;
  }
  const us = (x: number, n: number) => +((x * 1000) / n).toFixed(2);
  t.dispose();
  return {
    name: 'encode tiny training step',
    dispatchesPerStep: ms.on.n / steps,
    stepUsPerDispatch: us(ms.on.step, ms.on.n),
    stepUsPerDispatchNoCache: us(ms.off.step, ms.off.n),
    runUsPerDispatch: us(ms.on.run, ms.on.n),
    runUsPerDispatchNoCache: us(ms.off.run, ms.off.n),
    replayUsPerDispatch: us(ms.replay.step, ms.replay.n),
    replayed: (t.replayer?.counters.replayed ?? 0) - replayed0,
    submitUsPerDispatch: us(ms.on.flush + ms.off.flush, ms.on.n + ms.off.n),
    submitsPerStep: submits / (3 * steps),
    bindGroupHitRate: +(hits / ms.on.n).toFixed(3),
    bindGroups: b.bindGroupCount,
    steps,
  };
}
