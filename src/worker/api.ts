// The worker's composition root: the protocol's TrainerApi over training/, model/ and engine/, on the worker's WebGPU device.
import * as Comlink from 'comlink';
import { acquireGpu, type Gpu } from '../engine/gpu.js';
import { clearHubCache, hubCacheContents } from '../model/hub-cache.js';
import type { Pipeline } from '../model/pipeline.js';
import { readLoraFile } from '../model/lora-file.js';
import { planRun, PlanError } from '../training/arithmetic.js';
import { validateConfig, type TrainConfig } from '../training/config.js';
import { loraSpecs, RunControl, Trainer, type TrainItem } from '../training/trainer.js';
import type { DatasetFile, LoadProgress, ModelSource, RunCallbacks, TrainerApi } from '../protocol/index.js';
import { decodeDataset } from './dataset.js';
import { heldBytesMeter, MemoryForecasts } from './memory-report.js';
import { hubDownloadPlan, loadModel } from './model-load.js';
import { PHASE_WORDS, RunStateReporter } from './run-state.js';

/** The worker's state: one device, one loaded model, one dataset, at most one run. */
class TrainerWorker implements TrainerApi {
  private gpu: Gpu | null = null;
  private pipeline: Pipeline | null = null;
  private items: TrainItem[] = [];
  private trainer: Trainer | null = null;
  private control: RunControl | null = null;
  private reporter: RunStateReporter | null = null;
  private readonly forecasts = new MemoryForecasts();
  /** True from a start() call until its run ends: set before any await, so a second start is refused. */
  private active = false;
  private loading = false;
  /** True while a run's steps go on (forecasts skip their advice then). */
  private running = false;

  private async device(): Promise<Gpu> {
    if (this.gpu) return this.gpu;
    const g = (this.gpu = await acquireGpu());
    // After a driver reset the device and everything on it are gone: the next load starts afresh.
    void g.lost.then(() => {
      if (this.gpu !== g) return;
      this.gpu = null;
      this.pipeline = null;
      this.trainer = null;
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

  async init() {
    return (await this.device()).adapter;
  }

  async loadModel(source: ModelSource, onProgress: (p: LoadProgress) => void) {
    if (this.active) throw new Error(`A training run is ${this.phaseWords()} on the loaded model: stop it before loading another (its last saved LoRA is kept).`);
    if (this.loading) throw new Error('A model is already loading: wait for it to finish before loading another.');
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
    const { items, report } = await decodeDataset(files);
    this.items = items;
    return report;
  }

  async setCaption(name: string, caption: string) {
    const it = this.items.find((i) => i.name === name); // the image's path in the dropped set
    if (!it) throw new Error(`No image ${name} in the dataset`);
    it.caption = caption;
  }

  async validateConfig(config: unknown) {
    const r = validateConfig(config);
    if (!r.ok) return r;
    try {
      return { ...r, plan: planRun(r.config, this.items.length ? this.items : 1), memory: this.memory(r.config) };
    } catch (e) {
      if (e instanceof PlanError) return { ok: false as const, errors: { [e.field]: e.message } };
      throw e;
    }
  }

  async start(config: TrainConfig, cb: RunCallbacks, resume?: Uint8Array) {
    // Everything up to `active = true` is synchronous: a second start() arriving meanwhile is refused, never run beside the first.
    if (this.active) throw new Error(`A training run is already ${this.phaseWords()}: this start was ignored. Stop the run (or wait for it to end) before starting another.`);
    if (this.loading) throw new Error('A model is loading: start when it is ready.');
    if (!this.pipeline) throw new Error('Load a model first');
    if (!this.items.length) throw new Error('The dataset is empty: drop some images first');
    const v = validateConfig(config);
    if (!v.ok) throw new Error(`Fix the settings first: ${Object.values(v.errors).join('; ')}`);
    this.active = true;
    this.reporter = null; // until this run's reporter exists, refusals say it is starting
    try {
      await this.begin(v.config, cb, resume);
    } catch (e) {
      this.active = false;
      throw e;
    }
  }

  async pause() {
    if (!this.active || !this.control || this.control.state !== 'running') return;
    this.control.pause();
    this.reporter?.refresh();
  }

  async resume() {
    this.control?.resume();
    this.reporter?.refresh();
  }

  async stop() {
    if (!this.active || !this.control) return;
    this.control.stop();
    this.reporter?.refresh();
  }

  async saveNow() {
    if (!this.trainer) return null;
    const f = await this.trainer.exportLora();
    return Comlink.transfer(f, [f.buffer]);
  }

  /** Set up a run and start it in the background; resolves once it runs (its first state sent). */
  private async begin(config: TrainConfig, cb: RunCallbacks, resume?: Uint8Array): Promise<void> {
    const pipeline = this.pipeline;
    if (!pipeline) throw new Error('Load a model first');
    this.trainer?.dispose();
    this.trainer = null;
    const { backend } = await this.device();
    // The pool keeps as many free bytes cached as the forecast assumed, so that the two agree.
    const forecast = this.memory(config);
    if (forecast) backend.setCacheLimit(forecast.cacheLimit);
    // The measured peak covers this run: weights, latent caching and the steps, as the forecast does.
    const held = heldBytesMeter(backend);
    const ctl = new RunControl();
    const rep = new RunStateReporter((s) => cb.onState(s), ctl);
    // A file continues with its own rank and alpha; where they differ from the settings, the log says so.
    const read = resume ? await readLoraFile(resume, loraSpecs(pipeline, config), 'The LoRA to continue') : undefined;
    for (const note of read?.notes ?? []) cb.onLog(note);
    let first = true;
    const t = (this.trainer = new Trainer(pipeline, config, this.items, {
      onMetrics: (m) => {
        // The first step's result ends the compilation: from here on the steps run.
        if (first) rep.set('running');
        first = false;
        cb.onMetrics({ ...m, ...held() });
      },
      onCheckpoint: (f, step) => cb.onCheckpoint(Comlink.transfer(f, [f.buffer]), step),
      onSample: (img, step, prompt) => cb.onSample(Comlink.transfer(img, [img.data.buffer]), step, prompt),
      onCompile: (done, total) => rep.set('compiling', { done, total }),
    }, read?.weights));
    this.control = ctl;
    this.reporter = rep;
    this.running = true;
    const n = this.items.length;
    rep.set('caching', { done: 0, total: n });
    void this.runInBackground(t, ctl, rep, cb, n);
  }

  private async runInBackground(t: Trainer, ctl: RunControl, rep: RunStateReporter, cb: RunCallbacks, n: number): Promise<void> {
    try {
      if (await t.cacheLatents((d) => rep.set('caching', { done: d, total: n }), ctl)) {
        // The trainer precompiles the steps' pipelines (onCompile counts them), then runs the first step.
        rep.set('compiling');
        await t.run(ctl);
      }
      const stopped = ctl.state === 'stopping';
      rep.set('done', { step: t.step, stopped, savedStep: t.lastSavedStep });
      cb.onDone({ step: t.step, stopped });
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

/** The API the worker exposes over Comlink. */
export function createTrainerApi(): TrainerApi {
  return new TrainerWorker();
}
