// The training loop: cached latents, noised samples, LoRA forward/backward with micro-batch accumulation,
// clipping, the optimizer step, periodic saves, and metrics read back one step late.
import { GpuDeviceLostError, type Backend } from '../engine/backend.js';
import type { PipelineCache } from '../engine/pipelines.js';
import { noGrad } from '../engine/autograd.js';
import type { Optimizer } from '../engine/optim/optimizer.js';
import { createOptimizer } from './optimizer.js';
import { StepRate } from './rate.js';
import { scope, tensor } from '../engine/tensor.js';
import { clipForward } from '../model/clip.js';
import { Layers } from '../model/layers.js';
import { writeLoraFile } from '../model/lora-file.js';
import { LoraNetwork, loraTargets, type LoraModuleSpec } from '../model/lora.js';
import type { Pipeline } from '../model/pipeline.js';
import { sampleImage, type RgbaImage as SampleImage } from '../model/sampler.js';
import { vaeEncode } from '../model/vae.js';
import { planRun, type RunPlan } from './arithmetic.js';
import { assignBucket, bucketInfo, makeBuckets, type Bucket } from './buckets.js';
import { processCaption } from './captions.js';
import type { TrainConfig } from './config.js';
import { toTensorData, type RgbaImage } from './images.js';
import { loraMetadata } from './metadata.js';
import { latentFactor } from './data.js';
import { stepSources } from './memory.js';
import { stepSettings, trainStep, type MicroBatch, type StepResult, type StepSettings } from './step.js';
import { alphasCumprod } from './noise.js';
import { Rng } from './rng.js';
import { makeSchedule } from './schedule.js';

/** An image of the dataset: its path in the set is its name (folders included, `10_cat/1.png`). */
export interface TrainItem {
  name: string;
  image: RgbaImage;
  caption: string;
  /** Times it is drawn per epoch, from its kohya `N_` folder; absent: config.repeats. */
  repeats?: number;
}

export interface StepMetrics {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  smoothLoss: number;
  lrUnet: number;
  lrTextEncoder: number;
  stepsPerSec: number;
  imagesPerSec: number;
  elapsedMs: number;
  etaMs: number;
  gpuBytes: number;
}

export interface TrainEvents {
  onMetrics?(m: StepMetrics): void;
  /** A saved LoRA (every `plan.saveEvery` steps and at the end). */
  onCheckpoint?(file: Uint8Array, step: number): void;
  /** A preview image rendered with the LoRA as trained so far (every `plan.sampleEvery` steps). */
  onSample?(image: SampleImage, step: number, prompt: string): void;
  onLog?(message: string): void;
  /**
   * Pipelines compiled before the first step (`Trainer.precompile`, run by `run` after the latents):
   * called with 0 of the total first, then as each is ready.
   */
  onCompile?(done: number, total: number): void;
}

/** One training sample, fully determined before any GPU work (so micro-batch splits do not change it). */
export interface Sample {
  item: number;
  flip: boolean;
  timestep: number;
  noise: Float32Array;
  caption: string;
}

/** Training stopped because the loss or gradients became NaN or infinite. */
export class NonFiniteLossError extends Error {
  constructor(readonly step: number, readonly lastSavedStep: number) {
    super(
      `The loss became NaN or infinite at step ${step}; no update was applied from it. The LoRA saved at step ${lastSavedStep} is kept. ` +
        'Try a lower learning rate (half of it), a smaller network alpha, or a max grad norm of 1.',
    );
    this.name = 'NonFiniteLossError';
  }
}

/** The GPU went away mid-run (driver reset, GPU removed): what happened, where, and what is kept. */
export class DeviceLostDuringTrainingError extends Error {
  constructor(override readonly cause: GpuDeviceLostError, readonly step: number, readonly lastSavedStep: number) {
    super(
      `${cause.message.replace(/ Nothing more.*$/, '')} Training stopped at step ${step}. ` +
        (lastSavedStep > 0 ? `The LoRA saved at step ${lastSavedStep} is kept: ` : 'Nothing was saved yet: ') +
        'load the model again and start, choosing that file under "Continue an earlier LoRA" to go on from it.',
    );
    this.name = 'DeviceLostDuringTrainingError';
  }
}

interface Latent {
  bucket: Bucket;
  data: Float32Array;
  flipped: Float32Array | null;
}

/** Pause, resume and stop from outside the loop. */
export class RunControl {
  state: 'running' | 'paused' | 'stopping' = 'running';
  /** Told when the loop really stops to wait on a pause (true) and when it goes on (false). */
  onWaiting?: (waiting: boolean) => void;
  private wake: (() => void) | null = null;
  pause(): void {
    if (this.state === 'running') this.state = 'paused';
  }
  resume(): void {
    if (this.state === 'paused') this.state = 'running';
    this.wake?.();
  }
  stop(): void {
    this.state = 'stopping';
    this.wake?.();
  }
  async waitWhilePaused(): Promise<void> {
    if (this.state !== 'paused') return;
    this.onWaiting?.(true);
    while (this.state === 'paused') await new Promise<void>((r) => (this.wake = r));
    this.onWaiting?.(false);
  }
}

/** The LoRA modules these settings train on this model (kohya's targets; LoCon and the text encoder as set). */
export function loraSpecs(pipeline: Pipeline, config: TrainConfig): LoraModuleSpec[] {
  return loraTargets(pipeline.unet.config, config.trainTextEncoder ? pipeline.clip.config : null, {
    rank: config.networkDim,
    alpha: config.networkAlpha,
    convRank: config.convDim,
    convAlpha: config.convAlpha,
    textEncoder: config.trainTextEncoder,
  });
}

/**
 * The rank and alpha of the saved linear and 3x3-conv modules, for the file's metadata: a continued
 * file keeps its own, which may differ from the settings' (the first module of each kind speaks for
 * all; kohya's metadata has one figure each).
 */
function savedRanks(specs: readonly LoraModuleSpec[], c: TrainConfig): { dim: number; alpha: number; convDim: number; convAlpha: number } {
  const lin = specs.find((s) => s.kernel === 1);
  const conv = specs.find((s) => s.kernel > 1);
  return { dim: lin?.rank ?? c.networkDim, alpha: lin?.alpha ?? c.networkAlpha, convDim: conv?.rank ?? c.convDim, convAlpha: conv?.alpha ?? c.convAlpha };
}

export class Trainer {
  readonly plan: RunPlan;
  readonly lora: LoraNetwork;
  private readonly backend: Backend;
  private readonly acp: Float64Array;
  private readonly rng: Rng;
  private latents: Latent[] = [];
  /** False until every image is encoded (a Stop can end the encoding early). */
  private latentsComplete = false;
  /** Frozen text-encoder outputs by final caption, when `cacheTextEncoderOutputs` is on. */
  private readonly contexts = new Map<string, Float32Array>();
  private buckets: Bucket[];
  step = 0;
  epoch = 0;
  lastSavedStep = 0;
  private readonly startedAt = Date.now();
  private readonly sessionId = Math.random().toString(36).slice(2);
  /** Exponential moving average of the loss (decay 0.95) and how many losses it has seen, for debiasing. */
  private ema = 0;
  private emaCount = 0;
  private readonly schedU: (s: number) => number;
  private readonly schedT: (s: number) => number;
  private readonly optimizer: Optimizer;
  private readonly settings: StepSettings;

  /** `resume`: weights read with `readLoraFile` from an earlier run's file, to continue training it. */
  constructor(readonly pipeline: Pipeline, readonly config: TrainConfig, readonly items: TrainItem[], readonly events: TrainEvents = {}, resume?: Map<string, { down: Float32Array; up: Float32Array }>) {
    if (!items.length) throw new Error('The dataset is empty: add at least one image');
    this.optimizer = createOptimizer(config);
    this.backend = pipeline.unet.weights.get('conv_in.weight').backend;
    this.plan = planRun(config, items);
    this.acp = alphasCumprod(config.zeroTerminalSnr);
    this.rng = new Rng(config.seed);
    this.lora = new LoraNetwork(this.backend, loraSpecs(pipeline, config), config.seed, resume, { dropout: config.networkDropout });
    this.settings = stepSettings(config);
    const spec = (baseLr: number) => ({ kind: config.scheduler, baseLr, totalSteps: this.plan.steps, warmupSteps: this.plan.warmupSteps, cycles: config.lrCycles, power: config.lrPower });
    this.schedU = makeSchedule(spec(this.plan.unetLr));
    this.schedT = makeSchedule(spec(this.plan.textEncoderLr));
    const r = config.resolution;
    this.buckets = config.enableBuckets ? makeBuckets({ resolution: r, step: config.bucketStep, min: Math.min(config.minBucket, r), max: Math.max(config.maxBucket, r), maxAspect: config.maxAspect }) : [{ width: r, height: r }];
  }

  /**
   * Encode every image once with the VAE (and its mirror image when flipping is on). `control` is
   * checked between images: a pause waits there, a Stop ends the encoding (returns false, nothing trained).
   */
  async cacheLatents(onProgress?: (done: number, total: number) => void, control?: RunControl): Promise<boolean> {
    const { vae } = this.pipeline;
    const L = new Layers(vae.weights);
    const rng = this.rng.fork('latents');
    this.latents = [];
    this.latentsComplete = false;
    for (let i = 0; i < this.items.length; i++) {
      await control?.waitWhilePaused();
      if (control?.state === 'stopping') return false;
      const it = this.items[i]!;
      const bucket = this.config.enableBuckets ? assignBucket(it.image.width, it.image.height, this.buckets) : this.buckets[0]!;
      const encode = async (flip: boolean) => {
        const px = toTensorData(it.image, bucket, flip);
        const { mean, logvar } = noGrad(() => scope(() => vaeEncode(L, vae.config, tensor(this.backend, px, [1, 3, bucket.height, bucket.width]))));
        const [m, lv] = await Promise.all([mean.read(), logvar.read()]);
        mean.dispose();
        logvar.dispose();
        // A sample of the latent distribution, scaled (kohya caches latent_dist.sample()).
        return m.map((v, j) => (v + Math.exp(0.5 * lv[j]!) * rng.normal()) * vae.config.scalingFactor);
      };
      this.latents.push({ bucket, data: await encode(false), flipped: this.config.flipAug ? await encode(true) : null });
      onProgress?.(i + 1, this.items.length);
    }
    if (this.config.cacheTextEncoderOutputs) await this.cacheContexts();
    this.latentsComplete = true;
    return true;
  }

  /**
   * Run the frozen text encoder once per distinct caption and keep its output on the host. Valid
   * configs allow this only with a frozen encoder and captions that no random choice changes, so
   * every sample's caption is one of these.
   */
  private async cacheContexts(): Promise<void> {
    const c = this.config;
    if (c.trainTextEncoder) throw new Error('Text-encoder outputs cannot be cached while the text encoder is trained');
    const { clip, tokenizer } = this.pipeline;
    const L = new Layers(clip.weights);
    const fixed = new Rng(0);
    this.contexts.clear();
    for (const it of this.items) {
      const caption = processCaption(it.caption, { shuffle: false, keepTokens: c.keepTokens, captionDropout: 0, tagDropout: 0, triggerWord: c.triggerWord }, fixed);
      if (this.contexts.has(caption)) continue;
      const ctx = noGrad(() => scope(() => clipForward(L, clip.config, tokenizer.encodeForModel(caption, clip.config.maxPositions), 1, c.clipSkip)));
      this.contexts.set(caption, await ctx.read());
      ctx.dispose();
    }
  }

  /** How many distinct captions have a cached text-encoder output. */
  get cachedContexts(): number {
    return this.contexts.size;
  }

  /** The next effective batch as micro-batches of samples sharing a bucket. */
  private *batches(): Generator<Sample[]> {
    const c = this.config;
    for (;;) {
      const rng = this.rng.fork(`epoch${this.epoch}`);
      const byBucket = new Map<string, number[]>();
      // Each image `repeats` times (its folder's, else the setting); with one count for all, the order is as it always was.
      const reps = this.items.map((it) => it.repeats ?? c.repeats);
      const most = Math.max(...reps);
      for (let r = 0; r < most; r++)
        this.latents.forEach((l, i) => {
          if (r >= reps[i]!) return;
          const k = `${l.bucket.width}x${l.bucket.height}`;
          const list = byBucket.get(k);
          if (list) list.push(i);
          else byBucket.set(k, [i]);
        });
      const batches: number[][] = [];
      for (const idx of byBucket.values()) {
        rng.shuffle(idx);
        for (let i = 0; i < idx.length; i += c.batchSize) batches.push(idx.slice(i, i + c.batchSize));
      }
      rng.shuffle(batches);
      // One stream per (batch, position): samples differ across batches yet stay independent of micro-batch splits.
      for (const [bi, b] of batches.entries()) yield b.map((item, j) => this.makeSample(item, rng.fork(`b${bi}s${j}`)));
      this.epoch++;
    }
  }

  /** Draw everything random about one sample: flip, timestep, noise (with offset), caption. */
  makeSample(item: number, rng: Rng): Sample {
    const c = this.config;
    const l = this.latents[item]!;
    const n = l.data.length;
    const noise = rng.normals(n);
    if (c.noiseOffset > 0) {
      const hw = n / 4;
      for (let ch = 0; ch < 4; ch++) {
        const o = c.noiseOffset * rng.normal();
        for (let j = 0; j < hw; j++) noise[ch * hw + j] = noise[ch * hw + j]! + o;
      }
    }
    return {
      item,
      flip: !!l.flipped && rng.next() < 0.5,
      timestep: rng.int(0, 1000),
      noise,
      caption: processCaption(this.items[item]!.caption, { shuffle: c.shuffleCaptions, keepTokens: c.keepTokens, captionDropout: c.captionDropout, tagDropout: c.tagDropout, triggerWord: c.triggerWord }, rng),
    };
  }

  /** The micro-batch of these samples (one bucket) as the step takes it: latents [B, C, h, w], noise, timesteps, captions. */
  private microBatch(samples: Sample[]): MicroBatch {
    const l0 = this.latents[samples[0]!.item]!;
    const n = l0.data.length;
    const latents = new Float32Array(samples.length * n);
    const noise = new Float32Array(samples.length * n);
    samples.forEach((s, b) => {
      const lat = this.latents[s.item]!;
      latents.set(s.flip ? lat.flipped! : lat.data, b * n);
      noise.set(s.noise, b * n);
    });
    const f = latentFactor(this.pipeline.vae.config);
    return { latents, noise, timesteps: samples.map((s) => s.timestep), captions: samples.map((s) => s.caption), height: l0.bucket.height / f, width: l0.bucket.width / f };
  }

  /**
   * One optimizer update from the given micro-batches (`trainStep`). Nothing is read back
   * here; the returned promise resolves with the mean loss and whether the update was skipped as
   * non-finite, once the GPU gets there.
   */
  optimizerStep(micro: Sample[][]): Promise<StepResult> {
    const model = { ...this.pipeline, lora: this.lora, contexts: this.contexts };
    const lr = { unet: this.schedU(this.step), te: this.schedT(this.step) };
    const pending = trainStep(model, this.settings, this.optimizer, micro.map((m) => this.microBatch(m)), { step: this.step + 1, lr });
    this.step++;
    return pending.read();
  }

  /** The prompt of the preview images: the configured one, else the trigger word and the first caption. */
  get samplePrompt(): string {
    const c = this.config;
    if (c.samplePrompt.trim()) return c.samplePrompt;
    const first = this.items[0]!.caption;
    return c.triggerWord && !first.startsWith(c.triggerWord) ? [c.triggerWord, first].filter(Boolean).join(', ') : first;
  }

  /**
   * Render a preview image at the training resolution with the LoRA as it is now (dropout off),
   * from the same seeded noise every time, so the images of a run are comparable.
   */
  async sample(): Promise<SampleImage> {
    const c = this.config;
    const r = c.resolution;
    const noise = this.rng.fork('sample').normals(4 * (r / 8) * (r / 8));
    return await sampleImage(this.pipeline, {
        prompt: this.samplePrompt,
        width: r,
        height: r,
        steps: Math.max(1, c.sampleSteps),
        guidance: c.sampleGuidance,
        noise,
        alphasCumprod: this.acp,
        prediction: c.prediction,
        clipSkip: c.clipSkip,
      adapters: { unet: this.lora.adapter('unet'), te: this.lora.arenas.te ? this.lora.adapter('te') : null },
    });
  }

  /**
   * Run to the end (or until stopped), saving every `plan.saveEvery` steps and at the end; metrics arrive
   * one step late. A run stopped before its first step saves nothing (an earlier LoRA is not replaced by
   * an untrained one). Steps/s and the ETA count step time only: previews, saves and pauses are left out.
   * A lost GPU device ends the run with a DeviceLostDuringTrainingError naming the step and the last save.
   */
  async run(control = new RunControl()): Promise<void> {
    try {
      await this.runSteps(control);
    } catch (e) {
      if (e instanceof GpuDeviceLostError) throw new DeviceLostDuringTrainingError(e, this.step, this.lastSavedStep);
      throw e;
    }
  }

  /**
   * Compile, asynchronously and several at once, the GPU pipelines the training steps will use,
   * so the first step does not stop at each new kernel: they are the sources one step of each
   * (bucket, batch size) the run draws dispatches on the meta device, with the same settings.
   * Nothing to do on the meta device; later calls find everything compiled and return at once.
   * A Stop on `control` ends it early (the rest would compile at first use).
   */
  async precompile(onProgress = this.events.onCompile, control?: RunControl): Promise<void> {
    const b = this.backend as Backend & { pipelines?: PipelineCache };
    if (b.kind !== 'gpu' || !b.pipelines) return;
    const { unet, clip, vae } = this.pipeline;
    const list = stepSources({ unet: unet.config, clip: clip.config, vae: vae.config }, this.config, this.stepShapes());
    await b.pipelines.compileAll(list, onProgress, undefined, () => control?.state === 'stopping');
  }

  /** The [batch, height, width] latent shapes of the run's micro-batches: per bucket in use, a full batch and the short last one. */
  private stepShapes(): [number, number, number][] {
    const perBucket = new Map<string, { bucket: Bucket; n: number }>();
    this.items.forEach((it, i) => {
      const bucket = this.latents[i]?.bucket ?? (this.config.enableBuckets ? assignBucket(it.image.width, it.image.height, this.buckets) : this.buckets[0]!);
      const k = `${bucket.width}x${bucket.height}`;
      const e = perBucket.get(k) ?? { bucket, n: 0 };
      e.n += it.repeats ?? this.config.repeats;
      perBucket.set(k, e);
    });
    const B = this.config.batchSize;
    const shapes: [number, number, number][] = [];
    for (const { bucket, n } of perBucket.values()) {
      for (const b of new Set([Math.min(B, n), n % B].filter((x) => x > 0))) shapes.push([b, bucket.height / 8, bucket.width / 8]);
    }
    return shapes;
  }

  private async runSteps(control: RunControl): Promise<void> {
    if (!this.latentsComplete && !(await this.cacheLatents(undefined, control))) return;
    if (control.state !== 'stopping') await this.precompile(undefined, control);
    const c = this.config;
    const gen = this.batches();
    const t0 = performance.now();
    const rate = new StepRate();
    // Milliseconds spent outside steps (previews, saves, pauses): the step clock leaves them out.
    let excluded = 0;
    const outside = async (f: () => Promise<unknown>) => {
      const a = performance.now();
      await f();
      excluded += performance.now() - a;
    };
    let pending: { step: number; result: Promise<{ loss: number; nonFinite: boolean }> } | null = null;
    const report = async (p: NonNullable<typeof pending>) => {
      const r = await p.result;
      if (r.nonFinite) throw new NonFiniteLossError(p.step, this.lastSavedStep);
      // Debiased as Adam's moments: early values average the losses so far instead of leaning on the first.
      this.ema = 0.95 * this.ema + 0.05 * r.loss;
      this.emaCount++;
      const smooth = this.ema / (1 - 0.95 ** this.emaCount);
      const now = performance.now();
      const elapsed = now - t0;
      const stepClock = now - excluded;
      rate.mark(p.step, stepClock);
      // The recent rate once there is one; before that, the run's average (which holds the compilation).
      const sps = rate.perSecond() ?? p.step / ((stepClock - t0) / 1000);
      this.events.onMetrics?.({
        step: p.step,
        totalSteps: this.plan.steps,
        epoch: this.epoch,
        loss: r.loss,
        smoothLoss: smooth,
        lrUnet: this.schedU(p.step - 1),
        lrTextEncoder: c.trainTextEncoder ? this.schedT(p.step - 1) : 0,
        stepsPerSec: sps,
        imagesPerSec: sps * this.plan.effectiveBatch,
        elapsedMs: elapsed,
        etaMs: (Math.max(0, this.plan.steps - p.step) / Math.max(sps, 1e-9)) * 1000,
        gpuBytes: this.backend.pool().liveBytes,
      });
    };
    while (this.step < this.plan.steps && control.state !== 'stopping') {
      if (control.state === 'paused') {
        // The finished step is reported before the wait, so nothing moves on the page while paused.
        if (pending) await report(pending);
        pending = null;
        await outside(() => control.waitWhilePaused());
        rate.reset();
      }
      if ((control.state as string) === 'stopping') break;
      const micro: Sample[][] = [];
      for (let i = 0; i < c.gradAccumulation; i++) micro.push(gen.next().value as Sample[]);
      const cur = { step: this.step + 1, result: this.optimizerStep(micro) };
      if (pending) await report(pending);
      pending = cur;
      const saving = this.step % this.plan.saveEvery === 0 && this.step < this.plan.steps;
      const sampling = c.sampleSteps > 0 && !!this.events.onSample && this.step % this.plan.sampleEvery === 0 && this.step < this.plan.steps;
      if (saving || sampling) {
        // The step's own time is measured up to its result; what follows is not step time.
        await report(pending);
        pending = null;
      }
      if (saving) await outside(() => this.save());
      if (sampling) await outside(() => this.emitSample());
    }
    if (pending) await report(pending);
    if (this.step === 0) return;
    await this.save();
    if (c.sampleSteps > 0 && this.events.onSample) await this.emitSample();
  }

  private async emitSample(): Promise<void> {
    const img = await this.sample();
    this.events.onSample?.(img, this.step, this.samplePrompt);
  }

  /** Serialize the current LoRA (kohya format) and hand it to `onCheckpoint`. */
  async save(): Promise<Uint8Array> {
    const file = await this.exportLora();
    this.lastSavedStep = this.step;
    this.events.onCheckpoint?.(file, this.step);
    return file;
  }

  async exportLora(): Promise<Uint8Array> {
    const modules = new Map<string, { spec: import('../model/lora.js').LoraModuleSpec; down?: Float32Array; up?: Float32Array }>();
    for (const [name, t, spec] of this.lora.parameters()) {
      const key = name.replace(/\.lora_(down|up)\.weight$/, '');
      const e = modules.get(key) ?? { spec };
      if (name.endsWith('lora_down.weight')) e.down = await t.read();
      else e.up = await t.read();
      modules.set(key, e);
    }
    const meta = loraMetadata({
      config: this.config,
      plan: this.plan,
      numImages: this.items.length,
      step: this.step,
      epoch: this.epoch,
      modelName: this.pipeline.name,
      sessionId: this.sessionId,
      startedAt: this.startedAt,
      images: this.items,
      bucketInfo: bucketInfo(this.latents.map((l) => l.bucket)),
      network: savedRanks(this.lora.specs, this.config),
    });
    return writeLoraFile([...modules.values()].map((m) => ({ spec: m.spec, down: m.down!, up: m.up! })), meta, this.config.savePrecision);
  }

  dispose(): void {
    this.optimizer.dispose();
    this.lora.dispose();
  }
}
