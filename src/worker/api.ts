// The worker's composition root: the protocol's TrainerApi over training/, model/ and engine/, on the worker's WebGPU device.
import * as Comlink from 'comlink';
import { acquireGpu, type Gpu } from '../engine/gpu.js';
import { clearHubCache, hubCacheContents } from '../model/hub-cache.js';
import type { Pipeline } from '../model/pipeline.js';
import { planRun, PlanError } from '../training/arithmetic.js';
import { validateConfig, type TrainConfig } from '../training/config.js';
import { checkSettings, SettingsError, TrainingSession } from '../training/session.js';
import { splitValidation } from '../training/validation.js';
import type { TrainItem } from '../training/data.js';
import { decodeImageBrowser } from '../training/decode-browser.js';
import type { RgbaImage } from '../training/images.js';
import type { BucketSettings, CaptionProgress, CaptionRequest, DatasetFile, LoadProgress, ModelSource, RunCallbacks, SampleProgress, SampleRequest, TrainerApi } from '../protocol/index.js';
import { adapterInfo } from './adapter.js';
import { BROWSER_CAPTION, CaptionService, type CaptionPlatform } from './caption.js';
import { datasetBuckets, decodeDataset } from './dataset.js';
import { heldBytesMeter, MemoryForecasts } from './memory-report.js';
import { hubDownloadPlan, loadModel } from './model-load.js';
import { PHASE_WORDS, RunStateReporter } from './run-state.js';
import { SampleRenders } from './sample.js';

/** The settings validated once at the worker's boundary; invalid ones refuse the start with every field's message. */
function settingsOrRefusal(config: unknown): TrainConfig {
  try {
    return checkSettings(config);
  } catch (e) {
    if (e instanceof SettingsError) throw new Error(`Fix the settings first: ${Object.values(e.errors).join('; ')}`);
    throw e;
  }
}

/** What the worker runs on: the browser's WebGPU and image decoder, or (tests in Node) Dawn and the Node decoder. */
export interface WorkerPlatform {
  acquireGpu(): Promise<Gpu>;
  decodeImage(name: string, bytes: ArrayBuffer): Promise<RgbaImage>;
  /** ONNX Runtime and the hub for auto-captioning (the browser's when absent). */
  caption?: CaptionPlatform;
}

/** The Web Worker's own: navigator.gpu, createImageBitmap. */
const BROWSER: WorkerPlatform = { acquireGpu: () => acquireGpu(), decodeImage: decodeImageBrowser };

/** The worker's state: one device, one loaded model, one dataset, at most one run. */
class TrainerWorker implements TrainerApi {
  private gpu: Gpu | null = null;
  private pipeline: Pipeline | null = null;
  private items: TrainItem[] = [];
  private session: TrainingSession | null = null;
  private reporter: RunStateReporter | null = null;
  private readonly forecasts = new MemoryForecasts();
  private readonly renders = new SampleRenders();
  private readonly captioner: CaptionService;
  /** True from a start() call until its run ends: set before any await, so a second start is refused. */
  private active = false;
  private loading = false;
  /** True while a run's steps go on (forecasts skip their advice then). */
  private running = false;

  constructor(private readonly platform: WorkerPlatform) {
    this.captioner = new CaptionService(platform.caption ?? BROWSER_CAPTION);
  }

  private async device(): Promise<Gpu> {
    if (this.gpu) return this.gpu;
    const g = (this.gpu = await this.platform.acquireGpu());
    // After a driver reset the device and everything on it are gone: the next load starts afresh.
    void g.lost.then(() => {
      if (this.gpu !== g) return;
      this.gpu = null;
      this.pipeline = null;
      this.session = null;
      this.forecasts.clear();
    });
    return g;
  }

  private memory(c: TrainConfig) {
    return this.pipeline && this.gpu ? this.forecasts.report(this.pipeline, this.gpu, c, this.running) : undefined;
  }

  /** The run's phase in words, for refusals ('starting' until its reporter exists). */
  private phaseWords(): string {
    return this.reporter ? PHASE_WORDS[this.reporter.state.phase] : 'starting';
  }

  async adapter() {
    return adapterInfo((await this.device()).adapter);
  }

  async loadModel(source: ModelSource, onProgress: (p: LoadProgress) => void) {
    if (this.active) throw new Error(`A training run is ${this.phaseWords()} on the loaded model: stop it before loading another (its last saved LoRA is kept).`);
    if (this.loading) throw new Error('A model is already loading: wait for it to finish before loading another.');
    if (this.renders.busy) throw new Error('A Try-it render is running on the loaded model: wait for it to finish before loading another.');
    this.loading = true;
    try {
      const { backend } = await this.device();
      // The new model loads beside the old one, which is disposed only once the new one is ready: a failed load keeps it.
      const next = await loadModel(backend, source, onProgress);
      this.pipeline?.dispose();
      this.pipeline = next.pipeline;
      this.forecasts.clear();
      return next.info;
    } finally {
      this.loading = false;
    }
  }

  cachedModels = () => hubCacheContents();
  hubDownloadPlan = (source: Extract<ModelSource, { kind: 'hub' }>) => hubDownloadPlan(source);
  deleteCachedModels = () => clearHubCache();

  async setDataset(files: DatasetFile[]) {
    this.items = [];
    const { items, report } = await decodeDataset(files, this.platform.decodeImage);
    this.items = items;
    return report;
  }

  async setCaption(name: string, caption: string) {
    const it = this.items.find((i) => i.name === name); // the image's path in the dropped set
    if (!it) throw new Error(`No image ${name} in the dataset`);
    it.caption = caption;
  }

  async setValidationMark(name: string, validation: boolean) {
    const it = this.items.find((i) => i.name === name);
    if (!it) throw new Error(`No image ${name} in the dataset`);
    it.validation = validation;
  }

  async bucketCounts(settings: BucketSettings) {
    return datasetBuckets(this.items, settings);
  }

  async validateConfig(config: unknown) {
    const r = validateConfig(config);
    if (!r.ok) return r;
    try {
      // The plan counts the images that train: held-out validation images are left out (a split that leaves none is refused by field).
      const train = this.items.length ? splitValidation(this.items, r.config).train : 1;
      return { ...r, plan: planRun(r.config, train), memory: this.memory(r.config) };
    } catch (e) {
      if (e instanceof PlanError) return { ok: false as const, errors: { [e.field]: e.message } };
      throw e;
    }
  }

  async start(config: TrainConfig, cb: RunCallbacks, continueFrom?: Uint8Array) {
    // Everything up to `active = true` is synchronous: a second start() arriving meanwhile is refused, never run beside the first.
    if (this.active) throw new Error(`A training run is already ${this.phaseWords()}: this start was ignored. Stop the run (or wait for it to end) before starting another.`);
    if (this.loading) throw new Error('A model is loading: start when it is ready.');
    if (this.renders.busy) throw new Error('A Try-it render is running: start training when it has finished.');
    if (!this.pipeline) throw new Error('Load a model first');
    if (!this.items.length) throw new Error('The dataset is empty: drop some images first');
    const settings = settingsOrRefusal(config);
    this.active = true;
    this.reporter = null; // until this run's reporter exists, refusals say it is starting
    try {
      await this.begin(settings, cb, continueFrom);
    } catch (e) {
      this.active = false;
      throw e;
    }
  }

  async pause() {
    const control = this.active ? this.session?.control : undefined;
    if (control?.state !== 'running') return;
    control.pause();
    this.reporter?.refresh();
  }

  async unpause() {
    // A render of the paused run's LoRA finishes first: the steps would change the LoRA under it.
    await this.renders.idle();
    // Not paused: nothing to do, and no state re-sent (the page would see the same phase twice).
    if (this.session?.control.state !== 'paused') return;
    this.session.control.unpause();
    this.reporter?.refresh();
  }

  async stop() {
    if (!this.active || !this.session) return;
    this.session.control.stop();
    this.reporter?.refresh();
  }

  async saveNow() {
    if (!this.session) return null;
    const f = await this.session.trainer.exportLora();
    return Comlink.transfer(f, [f.buffer]);
  }

  async sample(request: SampleRequest, onProgress: (p: SampleProgress) => void) {
    if (this.loading) throw new Error('A model is loading: render when it is ready.');
    if (!this.pipeline) throw new Error('Load a model first');
    // The steps and a render would share the GPU and the LoRA; a paused or finished run leaves both free.
    if (this.active && this.reporter?.state.phase !== 'paused') throw new Error(`A training run is ${this.phaseWords()}: pause it (or wait for it to end) to try the LoRA.`);
    return this.renders.render(this.pipeline, this.session?.trainer ?? null, request, onProgress);
  }

  async cancelSample() {
    this.renders.cancel();
  }

  async cancelCaption() {
    this.captioner.cancel();
  }

  async caption(request: CaptionRequest, onProgress: (p: CaptionProgress) => void) {
    if (this.active) throw new Error(`A training run is ${this.phaseWords()}: captions are read when a run starts, so caption before starting (or after the run ends).`);
    return this.captioner.caption(this.items, request, onProgress);
  }

  /** Set up a run and start it in the background; resolves once it runs (its first state sent). */
  private async begin(config: TrainConfig, cb: RunCallbacks, continueFrom?: Uint8Array): Promise<void> {
    const pipeline = this.pipeline;
    if (!pipeline) throw new Error('Load a model first');
    this.session?.dispose();
    this.session = null;
    const { backend } = await this.device();
    // The pool keeps as many free bytes cached as the forecast assumed, so that the two agree.
    const forecast = this.memory(config);
    if (forecast) backend.setCacheLimit(forecast.cacheLimit);
    // The measured peak covers this run: weights, latent caching and the steps, as the forecast does.
    const held = heldBytesMeter(backend);
    let first = true;
    const state = () => this.reporter!; // set below, before any event can arrive
    const s = await TrainingSession.open({
      pipeline, config, items: this.items,
      ...(continueFrom ? { continueFrom: { file: continueFrom, name: 'The file to continue' } } : {}),
      events: {
        onMetrics: (m) => {
          // The first step's result ends the compilation: from here on the steps run.
          if (first) state().set('running');
          first = false;
          cb.onMetrics({ ...m, ...held() });
        },
        onCheckpoint: (f, step, st) => cb.onCheckpoint(Comlink.transfer(f, [f.buffer]), step, st && Comlink.transfer(st, [st.buffer])),
        onPreview: (img, step, prompt) => cb.onPreview(Comlink.transfer(img, [img.data.buffer]), step, prompt),
        onValidation: (v) => cb.onValidation?.(v),
        onImageLosses: (losses, step) => cb.onImageLosses?.(losses, step),
        onProgress: (stage, counts) => state().set(stage, counts ?? {}),
      },
    });
    // What continues from where (a run state: its step; a LoRA file: its own rank and alpha, a fresh optimizer), in the log.
    for (const note of s.continued?.notes ?? []) cb.onLog(note);
    this.session = s;
    this.reporter = new RunStateReporter((st) => cb.onState(st), s.control);
    this.running = true;
    void this.runInBackground(s, this.reporter, cb);
  }

  private async runInBackground(s: TrainingSession, rep: RunStateReporter, cb: RunCallbacks): Promise<void> {
    const t = s.trainer;
    try {
      const end = await s.run();
      rep.set('done', { step: end.step, stopped: end.stopped, savedStep: end.savedStep });
      cb.onDone({ step: end.step, stopped: end.stopped });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      rep.set('failed', { message, step: t.step, savedStep: t.lastSavedStep });
      cb.onError(message);
    } finally {
      this.running = false;
      this.active = false;
    }
  }
}

/** The API the worker exposes over Comlink (on the browser's platform unless told otherwise). */
export function createTrainerApi(platform: WorkerPlatform = BROWSER): TrainerApi {
  return new TrainerWorker(platform);
}
