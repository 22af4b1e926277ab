// Try-it renders on the tiny pipeline: strength 0 is the base model bit for bit, strength 1 differs, one seed for every strength, per-step progress, named refusals.
import { describe, expect, it } from 'vitest';
import { Rng } from '../engine/rng.js';
import { testBackend } from '../engine/testing/gpu.js';
import { randomArray } from '../engine/testing/allclose.js';
import { LoraNetwork, type LoraInit } from '../model/lora.js';
import { sampleImage } from '../model/sampler.js';
import { DEFAULT_CONFIG } from './config.js';
import { loraFile, loraSpecs } from './network.js';
import { alphasCumprod } from './noise.js';
import { openSampleLora, renderStrengths } from './sample-render.js';
import { SampleRequestError, checkSampleRequest, sampleRequestErrors, type SampleProgress } from './sample-settings.js';
import { sampleItems, tinyPipeline } from './testing.js';
import { Trainer } from './trainer.js';

const REQUEST = { prompt: 'a photo of a cat', negativePrompt: 'blurry', seed: 3, steps: 2, guidance: 5, width: 64, height: 64, sampler: 'euler_a' as const, strengths: [0, 1, 0] };

describe('Try-it renders (tiny pipeline, Dawn)', () => {
  it('strength 0 equals the base model bit for bit, strength 1 differs; repeated strengths render once', async () => {
    const backend = await testBackend();
    const p = await tinyPipeline(backend);
    // A LoRA that does something: every factor random (a fresh network's up projections are zero).
    const config = { ...DEFAULT_CONFIG, networkDim: 2, networkAlpha: 2 };
    const specs = loraSpecs(p, config);
    const init = new Map<string, LoraInit>(specs.map((s, i) => [`lora_${s.part}_${s.path.replaceAll('.', '_')}`, { down: Float32Array.from(randomArray(s.rank * s.inFeatures * s.kernel ** 2, i, -0.5, 0.5)), up: Float32Array.from(randomArray(s.outFeatures * s.rank, 500 + i, -0.5, 0.5)) }]));
    const net = new LoraNetwork(backend, specs, 0, init);
    const bytes = await loraFile(net, {}, 'fp32');
    net.dispose();

    const opened = await openSampleLora(p, { source: 'file', bytes, name: 'mine.safetensors' }, null);
    const progress: SampleProgress[] = [];
    const images = await renderStrengths(p, REQUEST, opened.adapters, opened.settings, (e) => progress.push(e));
    opened.dispose();
    // The base model alone, nothing of the LoRA loaded, from the noise the seed gives.
    const seed = new Rng(REQUEST.seed);
    const base = await sampleImage(p, { ...REQUEST, noise: seed.fork('sample-noise').normals(4 * 8 * 8), rng: seed.fork('sample-ancestral'), alphasCumprod: alphasCumprod(false), prediction: 'epsilon', clipSkip: 1 });
    expect(images.map((i) => [i.strength, i.width, i.height])).toEqual([[0, 64, 64], [1, 64, 64], [0, 64, 64]]);
    expect(images[0]!.data).toEqual(base.data);
    expect(images[2]!.data).toEqual(base.data);
    expect(images[2]!.data).not.toBe(images[0]!.data); // its own buffer: each image can be transferred
    const changed = images[1]!.data.filter((v, i) => v !== base.data[i]).length;
    expect(changed).toBeGreaterThan(base.data.length / 8);
    expect(progress.map((e) => `${e.image}/${e.images}@${e.strength}:${e.step}/${e.steps}`)).toEqual(['0/3@0:1/2', '0/3@0:2/2', '1/3@1:1/2', '1/3@1:2/2']);
    p.dispose();
  }, 10 * 60_000);

  it("opens the run's network with the run's prediction and CLIP skip, and refuses what cannot render", async () => {
    const backend = await testBackend();
    const p = await tinyPipeline(backend);
    const trainer = new Trainer(p, { ...DEFAULT_CONFIG, resolution: 64, prediction: 'v_prediction', clipSkip: 2, trainTextEncoder: false }, sampleItems(1));
    const run = await openSampleLora(p, { source: 'trained' }, trainer);
    expect([run.settings.prediction, run.settings.clipSkip, !!run.adapters?.unet, run.adapters?.te]).toEqual(['v_prediction', 2, true, null]);
    await expect(openSampleLora(p, { source: 'trained' }, null)).rejects.toThrow(/No trained LoRA here yet: train one first, or drop a LoRA file/);
    await expect(openSampleLora(p, { source: 'file', bytes: new Uint8Array(0), name: 'a.safetensors' }, null)).rejects.toThrow(/a\.safetensors is empty/);
    const none = await openSampleLora(p, { source: 'none' }, null);
    await expect(renderStrengths(p, REQUEST, none.adapters, none.settings)).rejects.toThrow(/No LoRA to apply.*strength 0/);
    trainer.dispose();
    p.dispose();
  }, 10 * 60_000);

  it('names every bad field of a request', () => {
    expect(sampleRequestErrors(REQUEST)).toEqual({});
    const bad = { ...REQUEST, prompt: 3, seed: -1, steps: 0, guidance: Number.NaN, width: 100, height: 4096, sampler: 'heun', strengths: [0, 2] };
    const e = sampleRequestErrors(bad);
    expect(Object.keys(e).sort()).toEqual(['guidance', 'height', 'prompt', 'sampler', 'seed', 'steps', 'strengths', 'width']);
    expect(e.width).toMatch(/Width must be a multiple of 64 \(got 100\)/);
    expect(e.sampler).toMatch(/Sampler must be one of ddim, euler, euler_a/);
    expect(e.strengths).toMatch(/Strength must be between 0 and 1\.5 \(got 2\)/);
    expect(sampleRequestErrors({ ...REQUEST, strengths: [] }).strengths).toMatch(/at least one strength/);
    expect(() => checkSampleRequest({ ...REQUEST, steps: 151 })).toThrow(SampleRequestError);
  });
});
