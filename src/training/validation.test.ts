// Validation: the held-out split, a validation pass's loss against the training step's own loss of the same sample, per-sample losses, and runs with validation (best-step saves, metadata, nothing in training changed).
import { describe, expect, it } from 'vitest';
import { LoraNetwork } from '../model/lora.js';
import { bytesSource, openSafetensors } from '../model/safetensors.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';
import { encodeLatents, type TrainItem } from './data.js';
import { loraSpecs } from './network.js';
import { createOptimizer } from './optimizer.js';
import { Rng } from './rng.js';
import { lossAndGradients, stepSettings, trainStep, type MicroBatch } from './step.js';
import { sampleItems, useTinyPipeline } from './testing.js';
import { Trainer, type StepMetrics } from './trainer.js';
import { ImageLosses } from './image-losses.js';
import { splitValidation, validationExamples, validationLoss, ValidationHistory, VALIDATION_TIMESTEPS, type ValidationPoint } from './validation.js';

const base: TrainConfig = { ...DEFAULT_CONFIG, resolution: 64, enableBuckets: false, trainTextEncoder: false, gradientCheckpointing: false, networkDropout: 0, flipAug: false, unetLr: 1e-3, networkDim: 4, networkAlpha: 4, sampleSteps: 0 };

describe('the validation split', () => {
  const items = (n: number, marked: number[] = []): TrainItem[] =>
    Array.from({ length: n }, (_, i) => ({ name: `${i}.png`, image: { width: 1, height: 1, data: new Uint8ClampedArray(4) }, caption: '', ...(marked.includes(i) ? { validation: true } : {}) }));
  const names = (l: readonly TrainItem[]) => l.map((i) => i.name);

  it('holds out round(split x images), at least one, chosen by the seed, and trains on the rest', () => {
    const set = items(20);
    const a = splitValidation(set, { ...base, validation: 'holdout', validationSplit: 0.1 });
    expect(a.validation).toHaveLength(2);
    expect(a.train).toHaveLength(18);
    expect(new Set([...names(a.train), ...names(a.validation)]).size).toBe(20);
    expect(names(splitValidation(set, { ...base, validation: 'holdout', validationSplit: 0.1 }).validation)).toEqual(names(a.validation));
    expect(names(splitValidation(set, { ...base, validation: 'holdout', validationSplit: 0.1, seed: 1 }).validation)).not.toEqual(names(a.validation));
    expect(splitValidation(items(3), { ...base, validation: 'holdout', validationSplit: 0.01 }).validation).toHaveLength(1);
    expect(splitValidation(items(2), { ...base, validation: 'holdout', validationSplit: 0.5 }).train).toHaveLength(1);
  });

  it('holds out the marked images plus the split of the others', () => {
    const s = splitValidation(items(11, [3, 7]), { ...base, validation: 'holdout', validationSplit: 0.2 });
    expect(names(s.validation).slice(0, 2)).toEqual(['3.png', '7.png']);
    expect(s.validation).toHaveLength(2 + 2); // 20% of the 9 others, rounded
    expect(names(s.train)).not.toContain('3.png');
    expect(names(splitValidation(items(4, [1]), { ...base, validation: 'holdout', validationSplit: 0 }).validation)).toEqual(['1.png']);
  });

  it('refuses a split that leaves nothing to train or to validate, naming the setting', () => {
    expect(() => splitValidation(items(2, [0, 1]), { ...base, validation: 'holdout' })).toThrow(/Every image \(2\) is marked for validation/);
    expect(() => splitValidation(items(5), { ...base, validation: 'holdout', validationSplit: 0 })).toThrow(/No image is held out.*the validation split is 0/);
    expect(() => splitValidation(items(1), { ...base, validation: 'holdout', validationSplit: 0.3 })).toThrow(/cannot hold out the only image/);
  });

  it('validates on up to 16 training images when asked, and trains on everything (marks too) otherwise', () => {
    const t = splitValidation(items(40, [2]), { ...base, validation: 'training' });
    expect(t.train).toHaveLength(40);
    expect(t.validation).toHaveLength(16);
    expect(t.validation.every((v) => t.train.includes(v))).toBe(true);
    expect(splitValidation(items(3, [2]), { ...base, validation: 'off' })).toMatchObject({ validation: [], train: { length: 3 } });
  });
});

describe('the validation history and per-image losses', () => {
  it('mark the lowest loss as best (never a non-finite one) and survive a snapshot as JSON', () => {
    const h = new ValidationHistory();
    const r = (loss: number) => ({ loss, images: [] });
    expect([h.add(2, r(0.5)).best, h.add(4, r(0.4)).best, h.add(6, r(NaN)).best, h.add(8, r(0.45)).best]).toEqual([true, true, false, false]);
    expect(h.best).toEqual({ step: 4, loss: 0.4 });
    const again = new ValidationHistory();
    again.restore(JSON.parse(JSON.stringify(h.snapshot())));
    expect(again.add(10, r(0.41)).best).toBe(false);
    expect(again.points.map((p) => p.step)).toEqual([2, 4, 6, 8, 10]);
    expect(() => again.restore({ points: [{ step: 'x' }], best: null })).toThrow(/validation history is damaged/);
  });
  it('average each image over its samples, report the ones a step touched, and refuse a snapshot of other images', () => {
    const l = new ImageLosses(['a', 'b', 'c']);
    expect(l.record([[0, 2], [2]], [[0.2, 0.4], [0.6]])).toEqual([{ name: 'a', mean: 0.2, count: 1 }, { name: 'c', mean: 0.5, count: 2 }]);
    l.record([[0]], [[NaN]]);
    expect(l.all()).toEqual([{ name: 'a', mean: 0.2, count: 1 }, { name: 'c', mean: 0.5, count: 2 }]);
    const m = new ImageLosses(['a', 'b', 'c']);
    m.restore(JSON.parse(JSON.stringify(l.snapshot())));
    expect(m.all()).toEqual(l.all());
    expect(() => new ImageLosses(['a']).restore(l.snapshot())).toThrow(/for 3 images, not this run's 1/);
  });
});

const tiny = useTinyPipeline();

describe('a validation pass on the tiny pipeline', () => {
  it("is the training step's loss of the same sample (forward only, LoRA applied), the same every time, and one per timestep", async () => {
    const config = { ...base, minSnrGamma: 5, noiseOffset: 0.05, triggerWord: 'smth' };
    const items = sampleItems(1);
    const lora = new LoraNetwork(tiny.backend, loraSpecs(tiny.pipeline, config), config.seed);
    const settings = stepSettings(config);
    const latents = (await encodeLatents(tiny.backend, tiny.pipeline.vae, items, config, new Rng(3)))!;
    const model = { ...tiny.pipeline, lora };
    const examples = validationExamples(items, latents, config, 4, 8);
    expect(examples.map((e) => e.timestep)).toEqual(VALIDATION_TIMESTEPS);
    expect(examples[0]!.caption.startsWith('smth')).toBe(true);
    // Train the LoRA away from its zero start, so a pass that left it out would differ from the reference.
    const opt = createOptimizer(config);
    const rng = new Rng(5);
    for (let step = 1; step <= 3; step++) {
      const batch: MicroBatch = { latents: latents[0]!.data, noise: rng.normals(latents[0]!.data.length), timesteps: [rng.int(0, 1000)], captions: [items[0]!.caption], height: 8, width: 8 };
      await trainStep(model, settings, opt, [batch], { step, lr: { unet: 1e-2, te: 0 } }).read();
    }
    const params = await lora.arenas.unet.flatParams.read();
    const a = await validationLoss(model, settings, examples);
    const b = await validationLoss(model, settings, examples);
    expect(b.loss).toBe(a.loss); // fixed noise and timesteps: bit for bit the same
    expect(await lora.arenas.unet.flatParams.read()).toEqual(params); // forward only: nothing updated
    // The reference: the training path's loss (pinned against PyTorch by golden-step.test.ts) of each pass's sample.
    const reference: number[] = [];
    for (const e of examples) {
      const [l] = lossAndGradients(model, settings, [{ latents: e.latent, noise: e.noise, timesteps: [e.timestep], captions: [e.caption], height: e.height, width: e.width }], 1);
      reference.push((await l!.read())[0]!);
      l!.dispose();
    }
    const mean = reference.reduce((s, v) => s + v, 0) / reference.length;
    expect(a.images).toEqual([{ name: items[0]!.name, loss: a.loss }]);
    expect(Math.abs(a.loss - mean)).toBeLessThanOrEqual(1e-5 * mean);
    // Each timestep's pass alone is its sample's training loss too.
    for (const [i, e] of examples.entries()) expect(Math.abs((await validationLoss(model, settings, [e])).loss - reference[i]!)).toBeLessThanOrEqual(1e-5 * reference[i]!);
    opt.dispose();
    lora.dispose();
  }, 20 * 60_000);
});

describe('per-sample training losses', () => {
  it('of a batch of 2 are each sample trained alone, and average to the batch loss', async () => {
    const config = { ...base, minSnrGamma: 5 };
    const items = sampleItems(2);
    const lora = new LoraNetwork(tiny.backend, loraSpecs(tiny.pipeline, config), config.seed);
    const settings = stepSettings(config);
    const latents = (await encodeLatents(tiny.backend, tiny.pipeline.vae, items, config, new Rng(3)))!;
    const rng = new Rng(9);
    const noise = [rng.normals(256), rng.normals(256)];
    const one = (i: number): MicroBatch => ({ latents: latents[i]!.data, noise: noise[i]!, timesteps: [150 + 600 * i], captions: [items[i]!.caption], height: 8, width: 8 });
    const both: MicroBatch = { latents: Float32Array.from([...latents[0]!.data, ...latents[1]!.data]), noise: Float32Array.from([...noise[0]!, ...noise[1]!]), timesteps: [150, 750], captions: items.map((i) => i.caption), height: 8, width: 8 };
    const opt = createOptimizer(config);
    const r = await trainStep({ ...tiny.pipeline, lora }, settings, opt, [both], { step: 1, lr: { unet: 0, te: 0 } }).read();
    expect(r.sampleLosses![0]).toHaveLength(2);
    const alone: number[] = [];
    for (const i of [0, 1]) {
      const [l] = lossAndGradients({ ...tiny.pipeline, lora }, settings, [one(i)], 1);
      alone.push((await l!.read())[0]!);
      l!.dispose();
    }
    r.sampleLosses![0]!.forEach((v, i) => expect(Math.abs(v - alone[i]!)).toBeLessThanOrEqual(1e-5 * alone[i]!));
    expect(Math.abs((r.sampleLosses![0]![0]! + r.sampleLosses![0]![1]!) / 2 - r.loss)).toBeLessThanOrEqual(1e-6 * r.loss);
    expect(alone[0]).not.toBeCloseTo(alone[1]!, 3);
    opt.dispose();
    lora.dispose();
  }, 20 * 60_000);
});

/** A 6-step run saved every 4 steps, with what it reported: metrics, saves, validation points, their order, per-image counts. */
const run = async (items: TrainItem[], c: Partial<TrainConfig>) => {
    const metrics: StepMetrics[] = [];
    const saves: { step: number; file: Uint8Array }[] = [];
    const points: ValidationPoint[] = [];
    const order: string[] = [];
    const images = new Map<string, number>();
    const t = new Trainer(tiny.pipeline, { ...base, baseSteps: 6, saveEvery: 4, ...c }, items, {
      onMetrics: (m) => metrics.push(m),
      onCheckpoint: (file, step) => (saves.push({ step, file }), order.push(`save ${step}`)),
      onValidation: (p) => (points.push(p), order.push(`validation ${p.step}${p.best ? ' best' : ''}`)),
      onImageLosses: (l) => l.forEach((x) => images.set(x.name, x.count)),
    });
    await t.run();
    t.dispose();
    return { metrics, saves, points, order, images };
  };

describe('a run with validation', () => {
  it("on training images changes nothing in the training, saves each new best, and writes the losses in the file's metadata", async () => {
    const items = sampleItems(2);
    const off = await run(items, {});
    const on = await run(items, { validation: 'training', validateEvery: 2 });
    // Validation draws from none of the training's streams and updates nothing.
    expect(on.metrics.map((m) => m.loss)).toEqual(off.metrics.map((m) => m.loss));
    const [fOn, fOff] = await Promise.all([on, off].map((r) => openSafetensors(bytesSource(r.saves.at(-1)!.file))));
    expect([...fOn!.tensors.keys()]).toEqual([...fOff!.tensors.keys()]);
    for (const k of fOff!.tensors.keys()) expect(await fOn!.readTensor(k)).toEqual(await fOff!.readTensor(k));
    expect(on.points.map((p) => p.step)).toEqual([2, 4, 6]);
    expect(on.points[0]!.best).toBe(true);
    expect(on.points[0]!.images.map((i) => i.name).sort()).toEqual(items.map((i) => i.name).sort());
    // Each new best is saved at its step (4 and 6 are saves anyway); validation comes before the save it causes.
    const bestSteps = on.points.filter((p) => p.best).map((p) => p.step);
    expect(on.saves.map((x) => x.step)).toEqual([...new Set([...bestSteps, 4, 6])].sort((a, b) => a - b));
    expect(off.saves.map((x) => x.step)).toEqual([4, 6]);
    expect(on.order.slice(0, 2)).toEqual(['validation 2 best', 'save 2']);
    // Every image trained; the counts add up to the steps (batch 1).
    expect([...on.images.values()].reduce((a, b) => a + b, 0)).toBe(6);
    const meta = fOn!.metadata;
    expect(JSON.parse(meta.lorasmith_validation_losses!)).toEqual(on.points.map((p) => [p.step, p.loss]));
    const best = on.points.reduce((a, p) => (p.loss < a.loss ? p : a));
    expect(meta.lorasmith_validation_best_step).toBe(String(best.step));
    expect(Number(meta.lorasmith_validation_loss)).toBe(on.points.at(-1)!.loss);
    expect(JSON.parse(meta.lorasmith_validation!)).toMatchObject({ mode: 'training', every: 2, images: 2, timesteps: VALIDATION_TIMESTEPS });
  }, 30 * 60_000);

  it('held out never trains: its images get a validation loss and no training loss', async () => {
    const items = sampleItems(3).map((i, k) => (k === 1 ? { ...i, validation: true } : i));
    const trained = new Set<string>();
    const points: ValidationPoint[] = [];
    const progress: number[] = [];
    const t = new Trainer(tiny.pipeline, { ...base, baseSteps: 4, validation: 'holdout', validationSplit: 0, validateEvery: 2 }, items, {
      onImageLosses: (l) => l.forEach((x) => trained.add(x.name)),
      onValidation: (p) => points.push(p),
    });
    expect(t.items).toHaveLength(2);
    await t.cacheLatents((done, total) => progress.push(done * 10 + total));
    expect(progress).toEqual([13, 23, 33]); // the 2 training images, then the one held out
    await t.run();
    expect(points.map((p) => p.images.map((i) => i.name))).toEqual([[items[1]!.name], [items[1]!.name]]);
    expect([...trained].sort()).toEqual([items[0]!.name, items[2]!.name]);
    expect(points.map((p) => p.step)).toEqual([2, 4]);
    t.dispose();
  }, 30 * 60_000);
});
