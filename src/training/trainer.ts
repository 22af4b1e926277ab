// A LoRA training run's state: its data (data.ts), its steps (step.ts) and its loop (loop.ts) over one pipeline and one config.
import { GpuBackend, GpuDeviceLostError, type Backend } from '../engine/backend.js';
import type { Optimizer } from '../engine/optim/optimizer.js';
import type { PipelineCache } from '../engine/pipelines.js';
import { LoraNetwork, type LoraInit } from '../model/lora.js';
import type { Pipeline } from '../model/pipeline.js';
import type { RgbaImage } from '../model/sampler.js';
import { planRun, type RunPlan } from './arithmetic.js';
import { bucketInfo } from './buckets.js';
import type { TrainConfig } from './config.js';
import { drawExample, encodeLatents, encodeTextContexts, epochBatches, latentFactor, microBatch, stepShapes, type Latent, type TrainingExample, type TrainItem } from './data.js';
import { DeviceLostDuringTrainingError, RunControl, trainingLoop, type TrainEvents } from './loop.js';
import { stepSources } from './memory.js';
import { exportNetwork, loraSpecs, networkOptions } from './network.js';
import { createOptimizer } from './optimizer.js';
import { previewPrompt, renderPreview } from './preview.js';
import { Rng } from './rng.js';
import { captureRunState, datasetFingerprint, restoreRunState, runStateWeights, type RunStateContents } from './run-state.js';
import { makeSchedule } from './schedule.js';
import { StepReplayer, stepKey, stepValues } from './replay-step.js';
import { stepSettings, trainStep, type StepResult, type StepSettings } from './step.js';
import { ImageLosses } from './image-losses.js';
import { RunValidation, splitValidation } from './validation.js';

export { DeviceLostDuringTrainingError, NonFiniteLossError, RunControl, type StepMetrics, type TrainEvents } from './loop.js';
export type { TrainItem, TrainingExample } from './data.js';
export { loraSpecs } from './network.js';

/** One run: the LoRA, the optimizer and learning-rate schedules, the cached latents, and where the run is. */
export class Trainer {
  /** The images that train: the dataset less the held-out validation images (validation.ts). */
  readonly items: TrainItem[];
  /** The whole dataset as given, held-out images included (the run state's fingerprint). */
  private readonly dataset: readonly TrainItem[];
  readonly plan: RunPlan;
  readonly lora: LoraNetwork;
  private readonly backend: Backend;
  private readonly rng: Rng;
  private readonly settings: StepSettings;
  private readonly optimizer: Optimizer;
  /** The learning-rate schedules of the U-Net's and the text encoder's LoRA, by update index (0-based). */
  private readonly schedule: { unet: (index: number) => number; te: (index: number) => number };
  /** Image pixels per latent pixel, and the latent channels. */
  private readonly factor: number;
  private readonly channels: number;
  private latents: Latent[] = [];
  /** False until every image is encoded (a Stop can end the encoding early). */
  private latentsComplete = false;
  /** Frozen text-encoder outputs by final caption, when `cacheTextEncoderOutputs` is on. */
  private contexts = new Map<string, Float32Array>();
  private examples: Generator<TrainingExample[]> | null = null;
  step = 0;
  epoch = 0;
  /** Batches of the current epoch already drawn (the run state's position in the epoch). */
  private batchInEpoch = 0;
  lastSavedStep = 0;
  private startedAt = Date.now();
  private sessionId = Math.random().toString(36).slice(2); // kohya's ss_session_id
  /** The validation set, passes and history; null when validation is off. */
  readonly validation: RunValidation | null;
  /** Each training image's loss so far. */
  private readonly imageLosses: ImageLosses;
  /**
   * Replay recorded step plans (replay-step.ts) on a GPU backend: a repeated step's commands are
   * encoded again without running the ops' code; results are bit for bit those of running it.
   */
  replay = true;
  /** The recorded plans and their counters (null on the meta device). */
  readonly replayer: StepReplayer | null;

  /**
   * `items`: the whole dataset (held-out validation images are split off here). `init`: weights read
   * with `readLoraFile` from an earlier run's file, to continue training it (the optimizer starts
   * fresh). `resume`: a run-state file read back, to continue that run exactly (its weights, optimizer
   * state, step and RNG position; `init` is then ignored).
   */
  constructor(readonly pipeline: Pipeline, readonly config: TrainConfig, items: TrainItem[], readonly events: TrainEvents = {}, init?: Map<string, LoraInit>, resume?: RunStateContents) {
    if (!items.length) throw new Error('The dataset is empty: add at least one image');
    this.backend = pipeline.unet.weights.get('conv_in.weight').backend;
    const split = splitValidation(items, config);
    this.items = split.train;
    this.dataset = items;
    this.imageLosses = new ImageLosses(this.items.map((i) => i.name));
    this.plan = planRun(config, this.items);
    this.validation = config.validation === 'off' ? null : new RunValidation(split, config, this.plan.validateEvery);
    this.rng = new Rng(config.seed);
    this.settings = stepSettings(config);
    this.optimizer = createOptimizer(config);
    const specs = loraSpecs(pipeline, config);
    this.lora = new LoraNetwork(this.backend, specs, config.seed, resume ? runStateWeights(resume, specs) : init, networkOptions(pipeline, config));
    if (resume) this.continueRun(resume);
    const spec = (baseLr: number) => ({ kind: config.scheduler, baseLr, totalSteps: this.plan.steps, warmupSteps: this.plan.warmupSteps, cycles: config.lrCycles, power: config.lrPower });
    this.schedule = { unet: makeSchedule(spec(this.plan.unetLr)), te: makeSchedule(spec(this.plan.textEncoderLr)) };
    this.factor = latentFactor(pipeline.vae.config);
    this.channels = pipeline.vae.config.latentChannels;
    this.replayer = this.backend instanceof GpuBackend ? new StepReplayer(this.backend) : null;
  }

  /**
   * Encode every image once with the VAE (and its mirror image when flipping is on), then the
   * captions when text-encoder outputs are cached. `control` is checked between images: a pause
   * waits there, a Stop ends the encoding (returns false, nothing trained).
   */
  async cacheLatents(onProgress?: (done: number, total: number) => void, control?: RunControl): Promise<boolean> {
    this.latentsComplete = false;
    const total = this.items.length + (this.validation?.toEncode ?? 0);
    const latents = await encodeLatents(this.backend, this.pipeline.vae, this.items, this.config, this.rng.fork('latents'), (d) => onProgress?.(d, total), control);
    if (!latents) return false;
    this.latents = latents;
    // Held-out validation images after the training ones, from their own stream, never flipped.
    const encode = (v: TrainItem[]) => encodeLatents(this.backend, this.pipeline.vae, v, { ...this.config, flipAug: false }, this.rng.fork('validation-latents'), (d) => onProgress?.(latents.length + d, total), control);
    if (this.validation && !(await this.validation.prepare(encode, latents, this.channels, this.factor))) return false;
    this.contexts = this.config.cacheTextEncoderOutputs ? await encodeTextContexts(this.pipeline, this.items, this.config) : new Map();
    this.latentsComplete = true;
    return true;
  }

  /** Take the run state's buffers and position: the next update is the run's update `step + 1`. */
  private continueRun(r: RunStateContents): void {
    restoreRunState(r, this.lora, this.optimizer);
    if (r.facts.tracking !== undefined) this.restoreTracking(r.facts.tracking as Parameters<Trainer['restoreTracking']>[0]);
    this.step = this.lastSavedStep = r.facts.step;
    this.epoch = r.facts.rng.epoch;
    this.batchInEpoch = r.facts.rng.batchInEpoch;
    this.sessionId = r.facts.sessionId;
    this.startedAt = r.facts.startedAt;
  }

  /** How many distinct captions have a cached text-encoder output. */
  get cachedContexts(): number {
    return this.contexts.size;
  }

  /** The examples of the run, one micro-batch (one bucket) at a time, epoch after epoch. */
  private *batches(): Generator<TrainingExample[]> {
    for (;;) {
      const rng = this.rng.fork(`epoch${this.epoch}`);
      const batches = epochBatches(this.items, this.latents, this.config, rng);
      // One stream per (batch, position): examples differ across batches yet stay independent of micro-batch splits.
      // A continued run starts at its position in the epoch: the streams are forked by name, so nothing needs replaying.
      for (let bi = this.batchInEpoch; bi < batches.length; bi++) {
        this.batchInEpoch = bi + 1;
        yield batches[bi]!.map((item, j) => this.drawExample(item, rng.fork(`b${bi}s${j}`)));
      }
      this.epoch++;
      this.batchInEpoch = 0;
    }
  }

  /** Draw everything random about one training example of image `item` (data.ts `drawExample`). */
  drawExample(item: number, rng: Rng): TrainingExample {
    return drawExample(item, this.items[item]!, this.latents[item]!, this.config, this.channels, rng);
  }

  /** The learning rates of update `index` (0-based) from the schedules. */
  learningRates(index: number): { unet: number; te: number } {
    return { unet: this.schedule.unet(index), te: this.schedule.te(index) };
  }

  /**
   * One optimizer update from the given micro-batches (`trainStep`). Nothing is read back here;
   * the returned promise resolves with the mean loss and whether the update was skipped as non-finite.
   */
  optimizerStep(micro: TrainingExample[][]): Promise<StepResult> {
    const model = { ...this.pipeline, lora: this.lora, contexts: this.contexts };
    const batches = micro.map((m) => microBatch(m, this.latents, this.factor));
    const o = { step: this.step + 1, lr: this.learningRates(this.step) };
    const run = () => trainStep(model, this.settings, this.optimizer, batches, o).read();
    const perSample = batches.map((b) => (b.timesteps.length > 1 ? b.timesteps.length : 0));
    const r = this.replay && this.replayer ? this.replayer.step(stepKey(model, batches), stepValues(model, this.settings, this.optimizer, batches, o), perSample, run) : run();
    this.step++;
    return r;
  }

  /** The loop's step: the next `gradAccumulation` micro-batches of the epoch, one update (its images' losses reported as it is read). */
  nextStep(): Promise<StepResult> {
    this.examples ??= this.batches();
    const micro = Array.from({ length: this.config.gradAccumulation }, () => this.examples!.next().value as TrainingExample[]);
    const step = this.step + 1;
    const items = micro.map((m) => m.map((e) => e.item));
    return this.optimizerStep(micro).then((r) => {
      if (!r.nonFinite && r.sampleLosses) {
        const losses = this.imageLosses.record(items, r.sampleLosses);
        this.events.onImageLosses?.(losses, step);
      }
      return r;
    });
  }

  /** What the run state keeps of validation and per-image losses (JSON), for `restoreTracking` after a continue. */
  trackingSnapshot(): { validation?: ReturnType<RunValidation['history']['snapshot']>; imageLosses: ReturnType<ImageLosses['snapshot']> } {
    return { ...(this.validation ? { validation: this.validation.history.snapshot() } : {}), imageLosses: this.imageLosses.snapshot() };
  }

  /** Put back a `trackingSnapshot` (a continued run goes on with its validation history, best step and per-image means). */
  restoreTracking(t: { validation?: unknown; imageLosses?: { sums: number[]; counts: number[] } }): void {
    if (t.validation !== undefined) this.validation?.history.restore(t.validation);
    if (t.imageLosses) this.imageLosses.restore(t.imageLosses);
  }

  /** The validation loss now, to `onValidation`; true when it is the best so far (validation.ts; false when off or already taken at this step). */
  async validate(): Promise<boolean> {
    const point = await this.validation?.run(this.step, { ...this.pipeline, lora: this.lora, contexts: this.contexts }, this.settings);
    if (!point) return false;
    this.events.onValidation?.(point);
    return point.best;
  }

  /** The prompt of the preview images (`previewPrompt`). */
  get samplePrompt(): string {
    return previewPrompt(this.config, this.items[0]!.caption);
  }

  /** A preview image with the LoRA as it is now, from the run's fixed preview noise. */
  preview(): Promise<RgbaImage> {
    const h = this.config.resolution / this.factor;
    const noise = this.rng.fork('sample').normals(this.channels * h * h);
    return renderPreview(this.pipeline, this.lora, this.config, this.samplePrompt, noise, this.settings.alphasCumprod);
  }

  /** A preview image to `onPreview`. */
  async emitPreview(): Promise<void> {
    const img = await this.preview();
    this.events.onPreview?.(img, this.step, this.samplePrompt);
  }

  /** Bytes the GPU holds in live buffers now. */
  liveBytes(): number {
    return this.backend.pool().liveBytes;
  }

  /**
   * Compile, asynchronously and several at once, the GPU pipelines the training steps will use, so
   * the first step does not stop at each new kernel: the sources one step of each (bucket, batch
   * size) of the run dispatches on the meta device. A Stop on `control` ends it early.
   */
  async precompile(onProgress = this.events.onCompile, control?: RunControl): Promise<void> {
    const b = this.backend as Backend & { pipelines?: PipelineCache };
    if (b.kind !== 'gpu' || !b.pipelines) return;
    const { unet, clip, vae } = this.pipeline;
    const list = stepSources({ unet: unet.config, clip: clip.config, vae: vae.config }, this.config, stepShapes(this.items, this.latents, this.config, this.factor), {
      maxStorageBuffers: b.maxStorageBuffers,
      subgroups: (b as GpuBackend).subgroups,
      nativeF16: (b as GpuBackend).nativeF16,
    });
    await b.pipelines.compileAll(list, onProgress, undefined, () => control?.state === 'stopping');
  }

  /**
   * Encode the latents (unless done), precompile, then the loop (`trainingLoop`). A lost GPU device
   * ends the run with a DeviceLostDuringTrainingError naming the step and the last save.
   */
  async run(control = new RunControl()): Promise<void> {
    try {
      if (!this.latentsComplete && !(await this.cacheLatents(undefined, control))) return;
      if (control.state !== 'stopping') await this.precompile(undefined, control);
      await trainingLoop(this, control);
    } catch (e) {
      if (e instanceof GpuDeviceLostError) throw new DeviceLostDuringTrainingError(e, this.step, this.lastSavedStep);
      throw e;
    }
  }

  /** Serialize the current LoRA (kohya format) and the run state, and hand both to `onCheckpoint`. */
  async save(): Promise<Uint8Array> {
    const file = await this.exportLora();
    const state = await this.exportState();
    this.lastSavedStep = this.step;
    this.events.onCheckpoint?.(file, this.step, state);
    return file;
  }

  /** The run-state file as the run is now (`run-state.ts`): what continuing it exactly needs. */
  exportState(): Promise<Uint8Array> {
    const { config, step, epoch, batchInEpoch, sessionId, startedAt } = this;
    const rng = { seed: config.seed, epoch, batchInEpoch };
    const at = { step, totalSteps: this.plan.steps, rng, config, fingerprint: datasetFingerprint(this.dataset), modelName: this.pipeline.name, sessionId, startedAt, savedAt: Date.now(), tracking: this.trackingSnapshot() };
    return captureRunState(this.lora, this.optimizer, at);
  }

  /** The LoRA as it is now, a kohya-format `.safetensors` file with the run's metadata. */
  exportLora(): Promise<Uint8Array> {
    const { config, plan, items, step, epoch, sessionId, startedAt } = this;
    const facts = { config, plan, numImages: items.length, step, epoch, modelName: this.pipeline.name, sessionId, startedAt, images: items, ...(this.validation ? { validation: this.validation.summary() } : {}) };
    return exportNetwork(this.lora, { ...facts, bucketInfo: bucketInfo(this.latents.map((l) => l.bucket)) });
  }

  /** Free the LoRA and the optimizer's state (the pipeline is the caller's). */
  dispose(): void {
    this.optimizer.dispose();
    this.lora.dispose();
  }
}
