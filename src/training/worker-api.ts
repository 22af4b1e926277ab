// The worker side of the protocol: model loading, dataset decoding, validation and the run, on the worker's WebGPU device.
import * as Comlink from 'comlink';
import { acquireGpu, type Gpu } from '../engine/gpu.js';
import { loadDiffusers, loadSingleFile, type Pipeline, type RepoFiles } from '../model/pipeline.js';
import { clearHubCache, hubCacheContents, hubFileUrl, openHubRepo, type HubLoadReport, type HubRef } from '../model/hub-cache.js';
import { blobSource, openSafetensors, urlSource } from '../model/safetensors.js';
import type { Backend } from '../engine/backend.js';
import type { PoolStats } from '../engine/pool.js';
import { ClipTokenizer } from '../model/tokenizer.js';
import type { DatasetFile, DatasetReport, HubDownloadPlan, LoadProgress, MemoryReport, ModelSource, RunCallbacks, RunPhase, RunState, TrainerApi } from '../protocol/index.js';
import { planRun, PlanError } from './arithmetic.js';
import { assignBucket, makeBuckets } from './buckets.js';
import { validateConfig, type TrainConfig } from './config.js';
import { estimateTrainingMemory } from './memory.js';
import { adviseMemory } from './memory-advice.js';
import { LoadTracker, partOfKey } from './load-progress.js';
import { decodeImageBrowser } from './decode-browser.js';
import { REASON, skipReason } from './dataset-files.js';
import { loraSpecs, RunControl, Trainer, type TrainItem } from './trainer.js';
import { readLoraFile } from '../model/lora-file.js';

function httpRepo(base: string, name: string): RepoFiles {
  const url = (p: string) => `${base.replace(/\/$/, '')}/${p}`;
  return {
    name,
    open: (p) => urlSource(url(p)),
    text: async (p) => {
      const r = await fetch(url(p));
      if (!r.ok) throw new Error(`${url(p)}: HTTP ${r.status}`);
      return r.text();
    },
  };
}

/** What the page can know of the device's memory: WebGPU reports none; the browser gives the RAM, rounded and capped at 8 GiB. */
function deviceMemoryNote(gpu: Gpu): string {
  const ram = (globalThis.navigator as { deviceMemory?: number } | undefined)?.deviceMemory;
  const soft = gpu.adapter.isFallback || /swiftshader|llvmpipe|lavapipe/i.test(`${gpu.adapter.description} ${gpu.adapter.vendor} ${gpu.adapter.architecture}`);
  const ramNote = ram ? `this computer reports about ${ram} GiB of RAM (browsers round this figure and may cap it)` : 'the browser does not say how much RAM this computer has';
  return `WebGPU does not report how much memory the GPU has; ${ramNote}${soft ? ', which this software adapter uses as GPU memory' : ' (integrated GPUs share it)'}`;
}

/** The forecast against the adapter; `advise` re-forecasts changes that would fit (seconds for SD 1.5, so not during a run). */
function memoryReport(pipeline: Pipeline, gpu: Gpu, c: TrainConfig, advise: boolean): MemoryReport {
  const models = { unet: pipeline.unet.config, clip: pipeline.clip.config, vae: pipeline.vae.config };
  const { maxBufferSize, maxStorageBufferBindingSize } = gpu.adapter.limits;
  const forecast = (x: TrainConfig) => estimateTrainingMemory(models, x, { maxBindingBytes: Math.min(maxBufferSize, maxStorageBufferBindingSize) });
  const e = forecast(c);
  const advice = adviseMemory(advise ? forecast : null, c, e, { maxBufferSize, maxStorageBufferBindingSize });
  return { ...e, maxBindingBytes: maxStorageBufferBindingSize, maxBufferBytes: maxBufferSize, deviceMemory: deviceMemoryNote(gpu), ...advice };
}

/** The device's held bytes (live + cached) and their peak; pools without those counters give live + free and the live peak. */
function heldBytes(backend: Backend): { heldBytes: number; peakHeldBytes: number } {
  const s = backend.pool() as PoolStats & { heldBytes?: number; peakHeldBytes?: number };
  const held = s.heldBytes ?? s.liveBytes + s.freeBytes;
  return { heldBytes: held, peakHeldBytes: Math.max(held, s.peakHeldBytes ?? s.peakLiveBytes) };
}

/** What the worker is doing with the run, for the refusal messages. */
const PHASE_WORDS: Record<RunPhase, string> = {
  idle: 'idle',
  caching: 'encoding its images',
  compiling: 'compiling its GPU kernels',
  running: 'training',
  paused: 'paused',
  stopping: 'stopping',
  done: 'done',
  failed: 'failed',
};

/**
 * The run's phase as the worker sees it, sent to the page at each change. A Stop holds the phase at
 * 'stopping' until the end; a pause shows as 'paused' only once the loop really waits.
 */
class RunStateReporter {
  state: RunState = { phase: 'idle', since: Date.now() };
  private extra: Partial<RunState> = {};
  private beforePause: RunPhase = 'running';
  constructor(private readonly cb: RunCallbacks, private readonly control: RunControl) {
    control.onWaiting = (waiting) => {
      if (waiting) {
        this.beforePause = this.state.phase;
        this.set('paused');
      } else this.set(this.beforePause);
    };
  }
  set(phase: RunPhase, extra: Partial<RunState> = {}): void {
    const ending = phase === 'done' || phase === 'failed';
    if (this.control.state === 'stopping' && !ending) phase = 'stopping';
    const since = phase === this.state.phase ? this.state.since : Date.now();
    const pausing = this.control.state === 'paused' && phase !== 'paused' && !ending ? { pausing: true } : {};
    this.extra = extra;
    this.state = { phase, since, ...pausing, ...extra };
    this.cb.onState(this.state);
  }
  /** Re-send the current phase (after a pause or stop request changes what the page should show). */
  refresh(): void {
    this.set(this.state.phase, this.extra);
  }
}

/** A diffusers weight file of each part, the fp16 variant first (half the download). */
const HUB_WEIGHTS = [
  ['unet/diffusion_pytorch_model.fp16.safetensors', 'unet/diffusion_pytorch_model.safetensors'],
  ['text_encoder/model.fp16.safetensors', 'text_encoder/model.safetensors'],
  ['vae/diffusion_pytorch_model.fp16.safetensors', 'vae/diffusion_pytorch_model.safetensors'],
];

/**
 * The weight files a hub load would download: per part nothing when a variant is in the browser
 * cache, else the first variant (fp16 first, as loads prefer) that a HEAD request finds, with its size.
 */
async function hubDownloadPlan(ref: HubRef): Promise<HubDownloadPlan> {
  const repo = await openHubRepo(ref); // opens the cache; no requests yet
  const files: HubDownloadPlan['files'] = [];
  for (const variants of HUB_WEIGHTS) {
    const where = await Promise.all(variants.map((p) => repo.locate?.(p, { localOnly: true }) ?? 'unknown'));
    if (where.includes('local')) continue;
    for (const [i, path] of variants.entries()) {
      if (where[i] === 'missing') continue; // an absent variant the cache remembers
      const r = await fetch(hubFileUrl(ref, path), { method: 'HEAD' }).catch(() => null);
      if (!r?.ok) continue;
      files.push({ path, bytes: Number(r.headers.get('content-length') ?? 0) || 0 });
      break;
    }
  }
  return { files, bytes: files.reduce((a, f) => a + f.bytes, 0) };
}

/** A repository whose opened files tell the tracker their sizes. */
function tracked(files: RepoFiles, t: LoadTracker): RepoFiles {
  return {
    ...files,
    open: async (p) => {
      const src = await files.open(p);
      t.opened(p, src.size);
      return src;
    },
  };
}

/** Per-part sizes from a single file's header (a few kilobytes read; the load reads it again). */
async function expectSingleFile(file: File, t: LoadTracker): Promise<void> {
  const f = await openSafetensors(blobSource(file)).catch(() => null);
  if (!f) return; // the load itself reports what is wrong with the file
  const sums = new Map<string, number>();
  for (const [k, info] of f.tensors) {
    const part = partOfKey(k);
    if (part) sums.set(part, (sums.get(part) ?? 0) + info.length);
  }
  for (const [part, bytes] of sums) t.expect(part, bytes);
}

export function createTrainerApi(): TrainerApi {
  let gpu: Gpu | null = null;
  let pipeline: Pipeline | null = null;
  let items: TrainItem[] = [];
  let trainer: Trainer | null = null;
  let control: RunControl | null = null;
  let reporter: RunStateReporter | null = null;
  /** True from a start() call until its run ends: set before any await, so a second start is refused. */
  let active = false;
  let loading = false;
  const device = async () => {
    if (gpu) return gpu;
    const g = (gpu = await acquireGpu());
    // After a driver reset the device and everything on it are gone: the next load starts afresh.
    void g.lost.then(() => {
      if (gpu !== g) return;
      gpu = null;
      pipeline = null;
      trainer = null;
      memo = null;
    });
    return g;
  };
  // The estimate runs the trainer's sequence on the meta device (1-3 s for SD 1.5 on a slow CPU); keep the last one.
  let memo: { key: string; report: MemoryReport; duringRun: boolean } | null = null;
  let running = false;
  const memory = (c: TrainConfig): MemoryReport | undefined => {
    if (!pipeline || !gpu) return undefined;
    const key = JSON.stringify([pipeline.name, c.resolution, c.batchSize, c.gradAccumulation, c.networkDim, c.convDim, c.trainTextEncoder, c.gradientCheckpointing, c.optimizer, c.clipSkip, c.cacheTextEncoderOutputs]);
    if (memo?.key !== key || (!running && memo.duringRun)) memo = { key, report: memoryReport(pipeline, gpu, c, !running), duringRun: running };
    return memo.report;
  };

  return {
    async init() {
      return (await device()).adapter;
    },

    async loadModel(source: ModelSource, onProgress) {
      if (active) throw new Error(`A training run is ${(reporter ? PHASE_WORDS[reporter.state.phase] : 'starting')} on the loaded model: stop it before loading another (its last saved LoRA is kept).`);
      if (loading) throw new Error('A model is already loading: wait for it to finish before loading another.');
      loading = true;
      try {
        const { backend } = await device();
        const tracker = new LoadTracker();
        const o = { onProgress: (p: LoadProgress) => onProgress(tracker.update(p)) };
        let hub: HubLoadReport | undefined;
        // The new model loads beside the old one, which is disposed only once the new one is ready: a failed load keeps it.
        let next: Pipeline;
        if (source.kind === 'tiny') next = await loadDiffusers(backend, tracked(httpRepo(source.baseUrl, 'tiny demo model'), tracker), o);
        else if (source.kind === 'hub') {
          const repo = await openHubRepo(source, o);
          next = await loadDiffusers(backend, tracked(repo, tracker), o);
          hub = repo.report();
        } else {
          const t = httpRepo(source.tokenizerUrl, 'CLIP tokenizer');
          const tok = ClipTokenizer.fromFiles(await t.text('vocab.json'), await t.text('merges.txt'));
          // The File is a handle on the disk: tensors are read as byte-range slices, never the whole file.
          await expectSingleFile(source.file, tracker);
          next = await loadSingleFile(backend, blobSource(source.file), tok, o);
        }
        pipeline?.dispose();
        pipeline = next;
        memo = null;
        const tiny = next.unet.config.blockChannels[0]! < 128;
        const variants = next.files?.filter((f) => f.includes('.fp16.')).length ?? 0;
        const notes = [...(next.info?.notes ?? []), ...(variants ? [`${variants === 3 ? 'all three' : variants} weight files taken as their fp16 variants (half the download)`] : [])];
        return { name: next.name, weightBytes: next.unet.weights.bytes + next.clip.weights.bytes + next.vae.weights.bytes, resolutionHint: tiny ? 64 : 512, hub, components: tracker.finished(), notes, demo: source.kind === 'tiny' || tiny };
      } finally {
        loading = false;
      }
    },

    cachedModels: () => hubCacheContents(),
    hubDownloadPlan: (source) => hubDownloadPlan(source),
    deleteCachedModels: () => clearHubCache(),

    async setDataset(files: DatasetFile[]) {
      const report: DatasetReport = { images: [], skipped: [] };
      items = [];
      const buckets = makeBuckets({ resolution: 512, step: 64, min: 320, max: 768, maxAspect: 2 });
      for (const f of files) {
        try {
          if (f.bytes.byteLength === 0) throw new Error(REASON.empty);
          const image = await decodeImageBrowser(f.name, f.bytes);
          items.push({ name: f.name, image, caption: f.caption, ...(f.repeats !== undefined ? { repeats: f.repeats } : {}) });
          const b = assignBucket(image.width, image.height, buckets);
          report.images.push({ name: f.name, width: image.width, height: image.height, bucket: `${b.width}x${b.height}` });
        } catch (e) {
          report.skipped.push({ name: f.name, reason: skipReason(f.name, e) });
        }
      }
      return report;
    },

    async setCaption(name: string, caption: string) {
      const it = items.find((i) => i.name === name); // the image's path in the dropped set
      if (!it) throw new Error(`No image ${name} in the dataset`);
      it.caption = caption;
    },

    async validateConfig(config: unknown) {
      const r = validateConfig(config);
      if (!r.ok) return r;
      try {
        return { ...r, plan: planRun(r.config, items.length ? items : 1), memory: memory(r.config) };
      } catch (e) {
        if (e instanceof PlanError) return { ok: false as const, errors: { [e.field]: e.message } };
        throw e;
      }
    },

    async start(config, cb, resume) {
      // Everything up to `active = true` is synchronous: a second start() arriving meanwhile is refused, never run beside the first.
      if (active) throw new Error(`A training run is already ${(reporter ? PHASE_WORDS[reporter.state.phase] : 'starting')}: this start was ignored. Stop the run (or wait for it to end) before starting another.`);
      if (loading) throw new Error('A model is loading: start when it is ready.');
      if (!pipeline) throw new Error('Load a model first');
      if (!items.length) throw new Error('The dataset is empty: drop some images first');
      const v = validateConfig(config);
      if (!v.ok) throw new Error(`Fix the settings first: ${Object.values(v.errors).join('; ')}`);
      config = v.config;
      active = true;
      reporter = null; // until this run's reporter exists, refusals say it is starting
      try {
        await begin(config, cb, resume);
      } catch (e) {
        active = false;
        throw e;
      }
    },
    async pause() {
      if (!active || !control || control.state !== 'running') return;
      control.pause();
      reporter?.refresh();
    },
    async resume() {
      control?.resume();
      reporter?.refresh();
    },
    async stop() {
      if (!active || !control) return;
      control.stop();
      reporter?.refresh();
    },
    async saveNow() {
      if (!trainer) return null;
      const f = await trainer.exportLora();
      return Comlink.transfer(f, [f.buffer]);
    },
  };

  /** Set up a run and start it in the background; resolves once it runs (its first state sent). */
  async function begin(config: TrainConfig, cb: RunCallbacks, resume?: Uint8Array): Promise<void> {
    if (!pipeline) throw new Error('Load a model first');
    trainer?.dispose();
    trainer = null;
    // The measured peak covers this run: weights, latent caching and the steps, as the forecast does.
    const { backend } = await device();
    // The pool keeps as many free bytes cached as the forecast assumed, so that the two agree.
    const forecast = memory(config);
    if (forecast) backend.setCacheLimit(forecast.cacheLimit);
    backend.resetPeak();
    let runPeak = 0;
    const held = () => {
      const h = heldBytes(backend);
      runPeak = Math.max(runPeak, h.peakHeldBytes);
      return { heldBytes: h.heldBytes, peakHeldBytes: runPeak };
    };
    const ctl = new RunControl();
    const rep = new RunStateReporter(cb, ctl);
    // A file continues with its own rank and alpha; where they differ from the settings, the log says so.
    const read = resume ? await readLoraFile(resume, loraSpecs(pipeline, config), 'The LoRA to continue') : undefined;
    const weights = read?.weights;
    for (const note of read?.notes ?? []) cb.onLog(note);
    const first = { done: false };
    trainer = new Trainer(pipeline, config, items, {
      onMetrics: (m) => {
        // The first step's result ends the compilation: from here on the steps run.
        if (!first.done) rep.set('running');
        first.done = true;
        cb.onMetrics({ ...m, ...held() });
      },
      onCheckpoint: (f, step) => cb.onCheckpoint(Comlink.transfer(f, [f.buffer]), step),
      onSample: (img, step, prompt) => cb.onSample(Comlink.transfer(img, [img.data.buffer]), step, prompt),
      onCompile: (done, total) => rep.set('compiling', { done, total }),
    }, weights);
    const t = trainer;
    control = ctl;
    reporter = rep;
    running = true;
    const n = items.length;
    rep.set('caching', { done: 0, total: n });
    void (async () => {
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
        running = false;
        active = false;
      }
    })();
  }
}
