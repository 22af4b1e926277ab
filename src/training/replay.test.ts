// Recorded step plans in the trainer: steps replayed from a plan give the losses, LoRA and optimizer buffers of steps run op by op, bit for bit, across a bucket change, accumulation and a validation pass; a differing recording is refused, counted with its reason.
import { beforeAll, expect, it } from 'vitest';
import type { GpuBackend } from '../engine/backend.js';
import { testBackend } from '../engine/testing/gpu.js';
import type { Pipeline } from '../model/pipeline.js';
import { checkSettings } from './session.js';
import { readRunStateFile } from './run-state.js';
import { Rng } from './rng.js';
import { tinyPipeline } from './testing.js';
import { Trainer, type TrainItem } from './trainer.js';

let backend: GpuBackend;
let pipeline: Pipeline;
beforeAll(async () => {
  backend = await testBackend();
  pipeline = await tinyPipeline(backend);
}, 10 * 60_000);

/** A seeded RGBA image of w x h. */
function image(w: number, h: number, seed: number): TrainItem['image'] {
  const r = new Rng(seed);
  return { width: w, height: h, data: Uint8ClampedArray.from(r.normals(w * h * 4), (v) => 128 + 40 * v) };
}

/** Two images, captions that shuffle and drop. */
const items: TrainItem[] = [
  { name: 'a.png', image: image(64, 64, 1), caption: 'red, square, photo' },
  { name: 'b.png', image: image(64, 64, 2), caption: 'blue, square, drawing' },
];

const config = checkSettings({
  resolution: 64, enableBuckets: false, trainTextEncoder: true, gradientCheckpointing: false, sampleSteps: 0,
  baseSteps: 20, shuffleCaptions: true, captionDropout: 0.3, networkDropout: 0.1, unetLr: 1e-3, textEncoderLr: 5e-4, networkDim: 4, networkAlpha: 2,
  validation: 'training', seed: 3,
});

/**
 * Steps by item lists, of two shapes (a shape change replays as a bucket change does: another plan,
 * the first kept): ACCUM has two micro-batches (a batch of two, then one image), ONE a single image.
 */
const ACCUM = [[0, 1], [1]];
const ONE = [[0]];
const SEQUENCE = [ACCUM, ACCUM, ACCUM, 'validate', ACCUM, ONE, ONE, ONE, ACCUM] as const;

/** Run the sequence; returns each step's loss, the validation loss, the final run state's tensors and the replay counters. */
async function run(replay: boolean) {
  const t = new Trainer(pipeline, config, items);
  t.replay = replay;
  await t.cacheLatents();
  const losses: number[] = [];
  let validation = NaN;
  for (const [i, s] of SEQUENCE.entries()) {
    if (s === 'validate') {
      await t.validate();
      validation = t.validation!.history.snapshot().points.at(-1)!.loss;
      continue;
    }
    const micro = s.map((ids, j) => ids.map((id, k) => t.drawExample(id, new Rng(1000 + 100 * i + 10 * j + k))));
    losses.push((await t.optimizerStep(micro)).loss);
  }
  const state = (await readRunStateFile(await t.exportState()))!.tensors;
  const counters = t.replayer!.counters;
  t.dispose();
  return { losses, validation, state, counters };
}

it('replays steps bit for bit, refuses differing recordings with a reason', async () => {
  const off = await run(false);
  const on = await run(true);
  expect(off.counters.replayed).toBe(0);
  // ACCUM: steps 1 and 2 differ (the first update makes the optimizer state), 2 and 3 make the plan, 4 replays after the validation;
  // ONE: 5 and 6 make its plan, 7 replays; the last step replays ACCUM's plan.
  expect(on.counters.replayed, JSON.stringify([...on.counters.refused])).toBe(3);
  expect([...on.counters.refused.keys()].join('\n')).toMatch(/the steps made \d+ and \d+ commands/);
  expect(on.losses).toEqual(off.losses);
  expect(on.losses.every((l, i) => Object.is(l, off.losses[i]))).toBe(true);
  expect(Object.is(on.validation, off.validation) && Number.isFinite(on.validation)).toBe(true);
  expect([...on.state.keys()].sort()).toEqual([...off.state.keys()].sort());
  expect([...on.state.keys()].some((k) => /adam/.test(k))).toBe(true);
  for (const [k, v] of off.state) expect(bytes(on.state.get(k)!).equals(bytes(v)), k).toBe(true);
}, 10 * 60_000);

const bytes = (v: Float32Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
