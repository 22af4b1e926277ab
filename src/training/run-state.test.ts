// Exact resume on the tiny pipeline: steps straight vs some, the run-state file, a fresh trainer and the rest give the same losses, LoRA, optimizer buffers and tracking bit for bit (AdamW, Prodigy, Lion, SGD with validation on); changed settings or images are refused by name.
import { describe, expect, it } from 'vitest';
import { bytesSource, openSafetensors } from '../model/safetensors.js';
import { checkSettings, TrainingSession } from './session.js';
import { readRunStateFile, readRunStateSummary } from './run-state.js';
import { RunStateMismatchError } from './run-state-check.js';
import { sampleItems, useTinyPipeline } from './testing.js';
import { Trainer } from './trainer.js';
import type { ValidationPoint } from './validation.js';

const tiny = useTinyPipeline();

/**
 * Everything random on: flips, caption shuffle and dropout, network dropout, offset noise, 3 images
 * a epoch (a save ends inside an epoch), warmup into a cosine schedule; `extra` adds the rest.
 */
const settings = (extra: object = {}) =>
  checkSettings({
    resolution: 64, enableBuckets: false, trainTextEncoder: false, gradientCheckpointing: false, sampleSteps: 0, baseSteps: 8, divideStepsByBatch: true,
    batchSize: 1, gradAccumulation: 1, saveEvery: 4, flipAug: true, shuffleCaptions: true, captionDropout: 0.2, networkDropout: 0.1, noiseOffset: 0.05,
    unetLr: 1e-3, textEncoderLr: 5e-4, scheduler: 'cosine', warmup: 2, warmupUnit: 'steps', networkDim: 4, networkAlpha: 2, seed: 7, ...extra,
  });

/** What a run leaves: each step's loss, the saves' LoRA files and run states by step, its validation points, and every GPU buffer and the tracking (validation history, per-image losses) at the end. */
interface Outcome {
  losses: Map<number, number>;
  files: Map<number, Uint8Array>;
  states: Map<number, Uint8Array>;
  points: ValidationPoint[];
  final: Map<string, Float32Array>;
  tracking: unknown;
}

/** Run a trainer to its end and read back its LoRA and optimizer buffers (the final run state's tensors). */
async function runToEnd(make: (events: Trainer['events']) => Trainer): Promise<Outcome> {
  const out: Outcome = { losses: new Map(), files: new Map(), states: new Map(), points: [], final: new Map(), tracking: undefined };
  const t = make({
    onMetrics: (m) => out.losses.set(m.step, m.loss),
    onCheckpoint: (f, step, state) => {
      out.files.set(step, f);
      out.states.set(step, state!);
    },
    onValidation: (p) => out.points.push(p),
  });
  await t.run();
  t.dispose();
  const last = (await readRunStateFile(out.states.get(t.plan.steps)!))!;
  out.final = last.tensors;
  out.tracking = last.facts.tracking;
  return out;
}

/** The tensors of a LoRA file, by name, as stored. */
async function loraTensors(file: Uint8Array): Promise<Map<string, Uint8Array>> {
  const f = await openSafetensors(bytesSource(file));
  const out = new Map<string, Uint8Array>();
  for (const k of f.tensors.keys()) out.set(k, await f.readRaw(k));
  return out;
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/**
 * `steps` straight (saving after `at`), then the same run continued from the run state of step `at`
 * in a fresh trainer: each loss, validation point, every GPU buffer, the tracking and the LoRA file's tensors compared exactly.
 */
async function straightVersusResumed(extra: Record<string, unknown> & { gradAccumulation?: number }, steps: number, at: number, position: { epoch: number; batchInEpoch: number }, items = sampleItems(3)): Promise<{ straight: Outcome; resumed: Outcome }> {
  const accum = extra.gradAccumulation ?? 1;
  const config = settings({ baseSteps: steps * accum, saveEvery: at, ...extra });
  const straight = await runToEnd((ev) => new Trainer(tiny.pipeline, config, items, ev));
  expect([...straight.losses.keys()]).toEqual(range(1, steps));
  expect([...straight.states.keys()]).toEqual([at, steps]);
  const state = (await readRunStateFile(straight.states.get(at)!))!;
  expect(state.facts.rng).toEqual({ seed: 7, ...position });
  const resumed = await runToEnd((ev) => new Trainer(tiny.pipeline, config, items, ev, undefined, state));
  expect([...resumed.losses.keys()]).toEqual(range(at + 1, steps));
  for (const s of range(at + 1, steps)) expect(resumed.losses.get(s), `loss at step ${s}`).toBe(straight.losses.get(s));
  // Validation after the save, and what the run state keeps of it and of the per-image losses, as if never interrupted.
  expect(resumed.points).toEqual(straight.points.filter((p) => p.step > at));
  expect(resumed.tracking).toEqual(straight.tracking);
  // Every buffer the run holds (LoRA parameters and each optimizer state) equals the uninterrupted run's, bit for bit.
  expect([...resumed.final.keys()].sort()).toEqual([...straight.final.keys()].sort());
  for (const [k, v] of straight.final) expect(Buffer.from(resumed.final.get(k)!.buffer).equals(Buffer.from(v.buffer)), `${k} bit for bit`).toBe(true);
  const [a, b] = [await loraTensors(straight.files.get(steps)!), await loraTensors(resumed.files.get(steps)!)];
  expect([...b.keys()]).toEqual([...a.keys()]);
  for (const [k, v] of a) expect(Buffer.from(b.get(k)!).equals(Buffer.from(v)), `LoRA file tensor ${k}`).toBe(true);
  return { straight, resumed };
}

describe('exact resume from a run-state file', () => {
  it('AdamW: 4 + save/load + 4 steps give the losses and the final LoRA of 8 straight, bit for bit', async () => {
    // 4 images drawn of 3 a epoch: the state stands one batch into the second epoch.
    await straightVersusResumed({ optimizer: 'adamw' }, 8, 4, { epoch: 1, batchInEpoch: 1 });
  }, 20 * 60_000);

  it('Prodigy with the text encoder trained and 2 micro-batches a step: 2 + 1 equal 3 straight (d, its sums, p0; both arenas)', async () => {
    // Two updates before the save: the first leaves Prodigy's numerator at 0 (p = p0), the second makes it, and d, move.
    await straightVersusResumed({ optimizer: 'prodigy', unetLr: 1, textEncoderLr: 1, warmup: 0, trainTextEncoder: true, gradAccumulation: 2 }, 3, 2, { epoch: 1, batchInEpoch: 1 });
  }, 20 * 60_000);

  it('Lion: 2 + 2 steps equal 4 straight, bit for bit (its momentum buffer too)', async () => {
    await straightVersusResumed({ optimizer: 'lion', unetLr: 1e-4 }, 4, 2, { epoch: 0, batchInEpoch: 2 });
  }, 20 * 60_000);

  it('SGD (momentum) with validation on a held-out image every 2 steps: 2 + 2 equal 4 straight, the validation history and best step carried', async () => {
    // One image of the three held out (one validation image: the cheapest pass), the other two a epoch.
    const items = sampleItems(3).map((it, i) => (i === 1 ? { ...it, validation: true } : it));
    const { straight, resumed } = await straightVersusResumed({ optimizer: 'sgd', validation: 'holdout', validationSplit: 0, validateEvery: 2 }, 4, 2, { epoch: 0, batchInEpoch: 2 }, items);
    expect(straight.points.map((p) => p.step)).toEqual([2, 4]);
    expect(resumed.points.map((p) => p.step)).toEqual([4]);
    // The continued run's history holds the point before the save, and its best is judged against it.
    const history = (resumed.tracking as { validation: { points: { step: number }[]; best: { step: number } } }).validation;
    expect(history.points.map((p) => p.step)).toEqual([2, 4]);
    expect(history.best.step).toBe(straight.points.reduce((m, p) => (p.loss < m.loss ? p : m)).step);
    expect(resumed.points[0]!.best).toBe(straight.points[1]!.best);
  }, 20 * 60_000);
});

describe('continuing with a run-state file or a plain LoRA file', () => {
  it('refuses changed settings and images by name, notes free changes, and says a plain LoRA starts the optimizer fresh', async () => {
    const config = settings();
    const items = sampleItems(2);
    const t = new Trainer(tiny.pipeline, config, items);
    const [state, lora] = [await t.exportState(), await t.exportLora()];
    t.dispose();
    const open = async (c: typeof config, its: typeof items, file = state) => {
      const s = await TrainingSession.open({ pipeline: tiny.pipeline, config: c, items: its, continueFrom: { file, name: 'run.state' } });
      s.dispose();
      return s.continued!;
    };
    const refusal = (p: Promise<unknown>) => p.then(() => 'no refusal', (e: unknown) => (e instanceof RunStateMismatchError ? e.message : `not a mismatch: ${String(e)}`));
    expect(await refusal(open(settings({ unetLr: 2e-3, networkDim: 8 }), items))).toMatch(/^run\.state cannot continue exactly: setting unetLr: 0\.001 → 0\.002; setting networkDim: 4 → 8\. /);
    const recaptioned = items.map((it, i) => (i === 1 ? { ...it, caption: 'another caption' } : it));
    expect(await refusal(open(config, recaptioned))).toMatch(new RegExp(`dataset: other captions for ${items[1]!.name}`));
    expect(await refusal(open(config, items.slice(0, 1)))).toMatch(new RegExp(`dataset: 1 of the run's images missing \\(${items[1]!.name}\\)`));
    const same = await open(settings({ saveEvery: 1, sampleEvery: 3 }), items);
    expect(same.fromStep).toBe(0);
    expect(same.notes[0]).toBe(`Continuing the run from step 0 of ${t.plan.steps} (its optimizer state, learning-rate schedule and random streams as they were).`);
    expect((await open(settings({ gradientCheckpointing: true }), items)).notes[1]).toMatch(/^gradientCheckpointing: false → true \(memory and speed only/);
    const plain = await open(config, items, lora);
    expect(plain.fromStep).toBeUndefined();
    expect(plain.notes[0]).toMatch(/^run\.state: a LoRA file, not a run state: .*the optimizer, the step count and the learning-rate schedule start fresh\./);
    // The page's summary: no GPU, no tensor read; null for a plain LoRA file.
    const summary = (await readRunStateSummary(state))!;
    expect({ step: summary.step, totalSteps: summary.totalSteps, config: summary.config }).toEqual({ step: 0, totalSteps: t.plan.steps, config });
    expect(summary.fingerprint.images.map((im) => [im.name, im.width, im.caption])).toEqual(items.map((it) => [it.name, it.image.width, it.caption]));
    expect(await readRunStateSummary(lora)).toBeNull();
  }, 10 * 60_000);
});
