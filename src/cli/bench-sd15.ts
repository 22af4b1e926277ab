// `npm run bench -- --sd15`: full-size SD 1.5 measured on this GPU: load, one U-Net forward, LoRA training steps, against the meta device's forecast.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { MetaBackend, type GpuBackend } from '../engine/backend.js';
import { noGrad } from '../engine/autograd.js';
import { formatBytes } from '../engine/bytes.js';
import { nodeGpu } from '../engine/node.js';
import { empty, scope, tensor } from '../engine/tensor.js';
import { clipForward, SD15_CLIP } from '../model/clip.js';
import { Layers } from '../model/layers.js';
import { fileSource } from '../model/node-source.js';
import { loadSingleFile, metaWeights, type Pipeline } from '../model/pipeline.js';
import { ClipTokenizer } from '../model/tokenizer.js';
import { SD15_UNET, unetForward } from '../model/unet.js';
import { SD15_VAE, vaeEncode, vaeWeightShapes } from '../model/vae.js';
import { validateConfig, type TrainConfig } from '../training/config.js';
import { decodeImageNode } from '../training/decode-node.js';
import { estimateTrainingMemory, metaStepCounts } from '../training/memory.js';
import { Rng } from '../training/rng.js';
import { Trainer } from '../training/trainer.js';
import { SD15_MODEL_PATH } from './sd15-model.js';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const MODELS = { unet: SD15_UNET, clip: SD15_CLIP, vae: SD15_VAE };

const USAGE = `usage: npm run bench -- --sd15 [--sd15-model=FILE] [--sd15-latent=8] [--sd15-steps=256,512] [--sd15-train-steps=2]
                                  [--sd15-forward-only] [--sd15-skip-forward] [--sd15-meta-only]
  Writes one JSON line per measurement (prefixed "sd15 ") and a readable summary. Make the model first: npm run sd15-model.`;

interface Options {
  model: string;
  latent: number;
  resolutions: number[];
  trainSteps: number;
  forward: boolean;
  gpu: boolean;
}

function options(argv: string[]): Options {
  const { values: v } = parseArgs({
    args: argv,
    strict: false,
    options: {
      'sd15-model': { type: 'string' }, 'sd15-latent': { type: 'string' }, 'sd15-steps': { type: 'string' }, 'sd15-train-steps': { type: 'string' },
      'sd15-forward-only': { type: 'boolean' }, 'sd15-skip-forward': { type: 'boolean' }, 'sd15-meta-only': { type: 'boolean' }, help: { type: 'boolean' },
    },
  });
  if (v.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const str = (x: unknown) => (typeof x === 'string' ? x : undefined);
  const steps = str(v['sd15-steps']) ?? '256,512';
  const resolutions = v['sd15-forward-only'] ? [] : steps.split(',').filter(Boolean).map(Number);
  for (const r of resolutions) if (!Number.isInteger(r) || r < 64 || r % 64) throw new Error(`--sd15-steps: ${r} is not a resolution (a multiple of 64)\n${USAGE}`);
  const latent = Number(str(v['sd15-latent']) ?? 8);
  if (!Number.isInteger(latent) || latent < 8 || latent % 8) throw new Error(`--sd15-latent: ${latent} must be a multiple of 8 (the U-Net halves it three times)`);
  return {
    model: str(v['sd15-model']) ?? SD15_MODEL_PATH,
    latent,
    resolutions,
    trainSteps: Math.max(1, Number(str(v['sd15-train-steps']) ?? 2)),
    forward: !v['sd15-skip-forward'],
    gpu: !v['sd15-meta-only'],
  };
}

/** The run the bench measures at resolution r: batch 1, rank 16, AdamW, checkpointing, one image, no buckets or flips. */
function benchConfig(r: number, steps: number): TrainConfig {
  const c = validateConfig({ resolution: r, batchSize: 1, gradAccumulation: 1, networkDim: 16, networkAlpha: 16, optimizer: 'adamw', gradientCheckpointing: true, enableBuckets: false, flipAug: false, baseSteps: steps, divideStepsByBatch: false, sampleSteps: 0 });
  if (!c.ok) throw new Error(`bench settings refused: ${JSON.stringify(c.errors)}`);
  return c.config;
}

const report = (row: Record<string, unknown>) => console.log('sd15 ' + JSON.stringify(row));
const gib = (b: number) => formatBytes(b, { unit: 'GiB' });
const mib = (b: number) => formatBytes(b, { unit: 'MiB' });

/** VAE encode FLOPs at r×r (the latent caching before the first step). */
function metaVaeFlops(r: number): number {
  const meta = new MetaBackend();
  const w = metaWeights(meta, vaeWeightShapes(SD15_VAE));
  meta.resetStats();
  const e = noGrad(() => scope(() => vaeEncode(new Layers(w), SD15_VAE, empty(meta, [1, 3, r, r]))));
  e.mean.dispose();
  e.logvar.dispose();
  w.dispose();
  return meta.stats.flops;
}

function metaFigures(resolutions: number[]): Map<number, { peakBytes: number; largestBuffer: number; dispatches: number; flops: number }> {
  const out = new Map<number, { peakBytes: number; largestBuffer: number; dispatches: number; flops: number }>();
  for (const r of resolutions) {
    const t0 = performance.now();
    const c = benchConfig(r, 1);
    const est = estimateTrainingMemory(MODELS, c);
    const d = metaStepCounts(MODELS, c);
    const vae = metaVaeFlops(r);
    const row = { stage: 'meta', resolution: r, forecastPeakBytes: est.peakBytes, largestBuffer: est.largestBuffer, weightBytes: est.weightBytes, networkBytes: est.networkBytes, dispatches: d.dispatches, tflopPerStep: +(d.flops / 1e12).toFixed(4), forecastTflop: +(est.flopsPerStep / 1e12).toFixed(4), vaeEncodeTflop: +(vae / 1e12).toFixed(4), ms: Math.round(performance.now() - t0) };
    report(row);
    out.set(r, { peakBytes: est.peakBytes, largestBuffer: est.largestBuffer, dispatches: d.dispatches, flops: d.flops });
  }
  return out;
}

async function load(o: Options, b: GpuBackend): Promise<Pipeline> {
  const tokDir = join(ROOT, 'public/clip-tokenizer');
  const tok = ClipTokenizer.fromFiles(readFileSync(join(tokDir, 'vocab.json'), 'utf8'), readFileSync(join(tokDir, 'merges.txt'), 'utf8'));
  const t0 = performance.now();
  const p = await loadSingleFile(b, await fileSource(o.model), tok);
  await b.sync();
  const ms = performance.now() - t0;
  const weightBytes = p.unet.weights.bytes + p.clip.weights.bytes + p.vae.weights.bytes;
  report({ stage: 'load', file: o.model, ms: Math.round(ms), weightBytes, unetBytes: p.unet.weights.bytes, clipBytes: p.clip.weights.bytes, vaeBytes: p.vae.weights.bytes, liveBytes: b.pool().liveBytes });
  return p;
}

/** Text encoder once, then the U-Net twice at latent×latent (the first run compiles its pipelines). */
async function forward(o: Options, b: GpuBackend, p: Pipeline): Promise<number> {
  const ids = p.tokenizer.encodeForModel('a photo of an astronaut riding a horse', SD15_CLIP.maxPositions);
  let t0 = performance.now();
  const ctx = noGrad(() => scope(() => clipForward(new Layers(p.clip.weights), SD15_CLIP, ids, 1)));
  const c = await ctx.read();
  report({ stage: 'clip-forward', ms: Math.round(performance.now() - t0), finite: c.every(Number.isFinite), pipelines: b.pipelines.size });
  const n = o.latent;
  const x = tensor(b, new Rng(1).normals(4 * n * n), [1, 4, n, n]);
  let last = 0;
  for (const run of ['first', 'second']) {
    await b.sync();
    b.resetStats();
    const pipes = b.pipelines.size;
    t0 = performance.now();
    const y = noGrad(() => scope(() => unetForward(new Layers(p.unet.weights), SD15_UNET, x, [500], ctx)));
    const encodeMs = performance.now() - t0;
    const v = await y.read();
    const ms = performance.now() - t0;
    y.dispose();
    const std = Math.sqrt(v.reduce((a, z) => a + z * z, 0) / v.length);
    report({ stage: 'unet-forward', run, latent: `${n}x${n}`, ms: Math.round(ms), encodeMs: Math.round(encodeMs), dispatches: b.stats.dispatches, submits: b.stats.submits, gflop: +(b.stats.flops / 1e9).toFixed(2), gflopPerSec: +(b.stats.flops / ms / 1e6).toFixed(3), pipelinesCompiled: b.pipelines.size - pipes, finite: v.every(Number.isFinite), outputStd: +std.toFixed(4) });
    last = ms;
  }
  x.dispose();
  ctx.dispose();
  return last;
}

interface StageResult {
  resolution: number;
  steps: { ms: number; encodeMs: number; dispatches: number; pipelinesCompiled: number; largestBuffer: number; peakLiveBytes: number; peakHeldBytes: number; loss: number }[];
  latentMs: number;
}

/** Training steps through the real Trainer: each one's JS encoding timed apart from waiting on the GPU. */
async function train(o: Options, b: GpuBackend, p: Pipeline, r: number, meta: { peakBytes: number; largestBuffer: number; dispatches: number } | undefined): Promise<StageResult> {
  const img = decodeImageNode('astronaut.png', readFileSync(join(ROOT, 'public/samples/astronaut.png')));
  const caption = readFileSync(join(ROOT, 'public/samples/astronaut.txt'), 'utf8').trim();
  const c = benchConfig(r, o.trainSteps);
  const t = new Trainer(p, c, [{ name: 'astronaut.png', image: img, caption }]);
  let t0 = performance.now();
  await t.cacheLatents();
  const latentMs = performance.now() - t0;
  report({ stage: 'latents', resolution: r, ms: Math.round(latentMs), pipelines: b.pipelines.size });
  const rng = new Rng(c.seed).fork('bench');
  const steps: StageResult['steps'] = [];
  for (let i = 0; i < o.trainSteps; i++) {
    const example = t.drawExample(0, rng.fork(`step${i}`));
    await b.sync();
    b.resetStats();
    b.resetPeak();
    const pipes = b.pipelines.size;
    report({ stage: 'train-step-start', resolution: r, step: i + 1, pipelines: pipes, at: new Date().toISOString() });
    t0 = performance.now();
    const result = t.optimizerStep([[example]]);
    const encodeMs = performance.now() - t0;
    // Encoding blocks the event loop; once it is done, a line a minute shows the step waiting on the GPU (a 256² step takes most of an hour here).
    const beat = setInterval(() => report({ stage: 'train-step-waiting', resolution: r, step: i + 1, encodeMs: Math.round(encodeMs), dispatches: b.stats.dispatches, pipelinesCompiled: b.pipelines.size - pipes, elapsedMs: Math.round(performance.now() - t0) }), 60_000);
    const { loss, nonFinite } = await result.finally(() => clearInterval(beat));
    await b.sync();
    const ms = performance.now() - t0;
    const pool = b.pool();
    // Held = live + cached + retiring buffers, the pool's peak since resetPeak; largestBuffer is the run's so far, after size-class rounding.
    const s = { ms: Math.round(ms), encodeMs: Math.round(encodeMs), dispatches: b.stats.dispatches, pipelinesCompiled: b.pipelines.size - pipes, largestBuffer: pool.largestBuffer, peakLiveBytes: pool.peakLiveBytes, peakHeldBytes: pool.peakHeldBytes, loss };
    steps.push(s);
    report({
      stage: 'train-step', resolution: r, step: i + 1, ...s, nonFinite, submits: b.stats.submits, gflop: +(b.stats.flops / 1e9).toFixed(1), gflopPerSec: +(b.stats.flops / ms / 1e6).toFixed(3),
      pipelinesTotal: b.pipelines.size, liveBytes: pool.liveBytes, freeBytes: pool.freeBytes, retiringBytes: pool.retiringBytes, cacheLimit: pool.cacheLimit,
      forecastPeakBytes: meta?.peakBytes, heldOverForecast: meta ? +(pool.peakHeldBytes / meta.peakBytes).toFixed(3) : undefined, liveOverForecast: meta ? +(pool.peakLiveBytes / meta.peakBytes).toFixed(3) : undefined,
      forecastLargestBuffer: meta?.largestBuffer, forecastDispatches: meta?.dispatches,
    });
  }
  t.dispose();
  return { resolution: r, steps, latentMs };
}

function summary(meta: ReturnType<typeof metaFigures>, loaded: { ms: number; bytes: number } | null, forwardMs: number | null, latent: number, stages: StageResult[]): void {
  console.log('\nSD 1.5 (random weights), batch 1, LoRA rank 16 (U-Net and text encoder), AdamW, gradient checkpointing');
  for (const [r, m] of meta) console.log(`  forecast ${r}²: peak ${gib(m.peakBytes)}, largest buffer ${mib(m.largestBuffer)}, ${m.dispatches} dispatches, ${(m.flops / 1e12).toFixed(3)} TFLOP per step`);
  if (loaded) console.log(`  load: ${(loaded.ms / 1000).toFixed(1)} s, ${gib(loaded.bytes)} of weights on the GPU`);
  if (forwardMs !== null) console.log(`  U-Net forward at ${latent}x${latent} latent: ${(forwardMs / 1000).toFixed(1)} s (second run, pipelines compiled)`);
  for (const s of stages) {
    const later = s.steps.slice(1);
    const per = later.length ? `${(later.reduce((a, x) => a + x.ms, 0) / later.length / 1000).toFixed(1)} s per step after the first` : 'no step after the first';
    const m = meta.get(s.resolution);
    const peak = Math.max(...s.steps.map((x) => x.peakHeldBytes));
    console.log(`  ${s.resolution}²: latents ${(s.latentMs / 1000).toFixed(1)} s; first step ${(s.steps[0]!.ms / 1000).toFixed(1)} s (JS encoding ${(s.steps[0]!.encodeMs / 1000).toFixed(1)} s, ${s.steps[0]!.pipelinesCompiled} pipelines compiled); ${per}`);
    console.log(`        ${s.steps[0]!.dispatches} dispatches per step${m ? ` (forecast ${m.dispatches})` : ''}; largest buffer ${mib(Math.max(...s.steps.map((x) => x.largestBuffer)))}${m ? ` (forecast ${mib(m.largestBuffer)})` : ''}; peak held ${gib(peak)}${m ? ` = ${(peak / m.peakBytes).toFixed(2)}x the forecast ${gib(m.peakBytes)}` : ''}; loss ${s.steps.map((x) => x.loss.toFixed(4)).join(', ')}`);
  }
}

/** The `--sd15` bench: meta figures first (cheap), then what the flags ask of the GPU. */
export async function benchSd15(argv: string[]): Promise<void> {
  const o = options(argv);
  const metaRes = [...new Set([256, 512, ...o.resolutions])];
  const meta = metaFigures(metaRes);
  let loaded: { ms: number; bytes: number } | null = null;
  let forwardMs: number | null = null;
  const stages: StageResult[] = [];
  if (o.gpu) {
    const { backend: b, adapter } = await nodeGpu();
    report({ stage: 'adapter', description: adapter.description || adapter.vendor, fallback: adapter.isFallback, maxBufferSize: b.device.limits.maxBufferSize, maxStorageBufferBindingSize: b.device.limits.maxStorageBufferBindingSize });
    const t0 = performance.now();
    const p = await load(o, b);
    loaded = { ms: performance.now() - t0, bytes: p.unet.weights.bytes + p.clip.weights.bytes + p.vae.weights.bytes };
    if (o.forward) forwardMs = await forward(o, b, p);
    for (const r of o.resolutions) stages.push(await train(o, b, p, r, meta.get(r)));
    p.dispose();
  }
  summary(meta, loaded, forwardMs, o.latent, stages);
}
