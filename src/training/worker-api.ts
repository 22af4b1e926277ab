// The worker side of the protocol: model loading, dataset decoding, validation and the run, on the worker's WebGPU device.
import * as Comlink from 'comlink';
import { acquireGpu, type Gpu } from '../engine/gpu.js';
import { loadDiffusers, loadSingleFile, type Pipeline, type RepoFiles } from '../model/pipeline.js';
import { clearHubCache, hubCacheContents, openHubRepo, type HubLoadReport } from '../model/hub-cache.js';
import { blobSource, urlSource } from '../model/safetensors.js';
import { ClipTokenizer } from '../model/tokenizer.js';
import type { DatasetFile, DatasetReport, MemoryReport, ModelSource, TrainerApi } from '../protocol/index.js';
import { planRun, PlanError } from './arithmetic.js';
import { assignBucket, makeBuckets } from './buckets.js';
import { validateConfig, type TrainConfig } from './config.js';
import { estimateTrainingMemory } from './memory.js';
import { ImageDecodeError, type RgbaImage } from './images.js';
import { loraSpecs, RunControl, Trainer, type TrainItem } from './trainer.js';
import { readLoraFile } from '../model/lora-file.js';

/** Decode with the browser (PNG, JPEG, WebP; EXIF orientation honoured; alpha kept for flattening). */
async function decodeInWorker(name: string, bytes: ArrayBuffer): Promise<RgbaImage> {
  let bmp: ImageBitmap;
  try {
    bmp = await createImageBitmap(new Blob([bytes]), { imageOrientation: 'from-image' });
  } catch {
    throw new ImageDecodeError(name, 'not an image this browser can decode, or the file is corrupt');
  }
  const c = new OffscreenCanvas(bmp.width, bmp.height);
  const ctx = c.getContext('2d')!;
  ctx.drawImage(bmp, 0, 0);
  const d = ctx.getImageData(0, 0, bmp.width, bmp.height);
  bmp.close();
  return { width: d.width, height: d.height, data: d.data };
}

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

/** WebGPU does not say how much memory the GPU has; past this, say which GPUs a run needs. */
const COMMON_GPU_BYTES = 8 * 2 ** 30;

function memoryReport(pipeline: Pipeline, gpu: Gpu, c: TrainConfig): MemoryReport {
  const e = estimateTrainingMemory({ unet: pipeline.unet.config, clip: pipeline.clip.config, vae: pipeline.vae.config }, c);
  const maxBindingBytes = gpu.adapter.limits.maxStorageBufferBindingSize;
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
  let warning: string | null = null;
  if (e.largestBuffer > maxBindingBytes)
    warning = `One buffer needs ${gib(e.largestBuffer)} but this GPU allows ${gib(maxBindingBytes)} per buffer: lower the resolution or the batch size`;
  else if (e.peakBytes > COMMON_GPU_BYTES)
    warning = `This needs about ${gib(e.peakBytes)} of GPU memory, more than most 8 GiB cards have: turn on gradient checkpointing, lower the batch size (use accumulation instead) or the resolution`;
  return { ...e, maxBindingBytes, warning };
}

export function createTrainerApi(): TrainerApi {
  let gpu: Gpu | null = null;
  let pipeline: Pipeline | null = null;
  let items: TrainItem[] = [];
  let trainer: Trainer | null = null;
  let control: RunControl | null = null;
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
  // The estimate runs the model on the meta device (under a second for SD 1.5); keep the last one.
  let memo: { key: string; report: MemoryReport } | null = null;
  const memory = (c: TrainConfig): MemoryReport | undefined => {
    if (!pipeline || !gpu) return undefined;
    const key = JSON.stringify([pipeline.name, c.resolution, c.batchSize, c.gradAccumulation, c.networkDim, c.convDim, c.trainTextEncoder, c.gradientCheckpointing, c.optimizer, c.clipSkip]);
    if (memo?.key !== key) memo = { key, report: memoryReport(pipeline, gpu, c) };
    return memo.report;
  };

  return {
    async init() {
      return (await device()).adapter;
    },

    async loadModel(source: ModelSource, onProgress) {
      const { backend } = await device();
      pipeline?.dispose();
      pipeline = null;
      const o = { onProgress: (p: { stage: string; loadedBytes: number; totalBytes: number }) => onProgress(p) };
      let hub: HubLoadReport | undefined;
      if (source.kind === 'tiny') pipeline = await loadDiffusers(backend, httpRepo(source.baseUrl, 'tiny demo model'), o);
      else if (source.kind === 'hub') {
        const repo = await openHubRepo(source, o);
        pipeline = await loadDiffusers(backend, repo, o);
        hub = repo.report();
      } else {
        const t = httpRepo(source.tokenizerUrl, 'CLIP tokenizer');
        const tok = ClipTokenizer.fromFiles(await t.text('vocab.json'), await t.text('merges.txt'));
        pipeline = await loadSingleFile(backend, blobSource(source.file), tok, o);
      }
      const tiny = pipeline.unet.config.blockChannels[0]! < 128;
      return { name: pipeline.name, weightBytes: pipeline.unet.weights.bytes + pipeline.clip.weights.bytes + pipeline.vae.weights.bytes, resolutionHint: tiny ? 64 : 512, hub };
    },

    cachedModels: () => hubCacheContents(),
    deleteCachedModels: () => clearHubCache(),

    async setDataset(files: DatasetFile[]) {
      const report: DatasetReport = { images: [], skipped: [] };
      items = [];
      const buckets = makeBuckets({ resolution: 512, step: 64, min: 320, max: 768, maxAspect: 2 });
      for (const f of files) {
        try {
          const image = await decodeInWorker(f.name, f.bytes);
          items.push({ name: f.name, image, caption: f.caption });
          const b = assignBucket(image.width, image.height, buckets);
          report.images.push({ name: f.name, width: image.width, height: image.height, bucket: `${b.width}x${b.height}` });
        } catch (e) {
          report.skipped.push({ name: f.name, reason: e instanceof Error ? e.message : String(e) });
        }
      }
      return report;
    },

    async setCaption(name: string, caption: string) {
      const it = items.find((i) => i.name === name);
      if (!it) throw new Error(`No image named ${name} in the dataset`);
      it.caption = caption;
    },

    async validateConfig(config: unknown) {
      const r = validateConfig(config);
      if (!r.ok) return r;
      try {
        return { ...r, plan: planRun(r.config, Math.max(1, items.length)), memory: memory(r.config) };
      } catch (e) {
        if (e instanceof PlanError) return { ok: false as const, errors: { [e.field]: e.message } };
        throw e;
      }
    },

    async start(config, cb, resume) {
      if (!pipeline) throw new Error('Load a model first');
      if (!items.length) throw new Error('The dataset is empty: drop some images first');
      const v = validateConfig(config);
      if (!v.ok) throw new Error(`Fix the settings first: ${Object.values(v.errors).join('; ')}`);
      config = v.config;
      trainer?.dispose();
      control = new RunControl();
      const ctl = control;
      const weights = resume ? await readLoraFile(resume, loraSpecs(pipeline, config), 'The LoRA to continue') : undefined;
      trainer = new Trainer(pipeline, config, items, {
        onMetrics: (m) => cb.onMetrics(m),
        onCheckpoint: (f, step) => cb.onCheckpoint(Comlink.transfer(f, [f.buffer]), step),
        onSample: (img, step, prompt) => cb.onSample(Comlink.transfer(img, [img.data.buffer]), step, prompt),
      }, weights);
      const t = trainer;
      void (async () => {
        try {
          cb.onLog(`Encoding ${items.length} images with the VAE…`);
          await t.cacheLatents((d, n) => cb.onLog(`Encoded ${d}/${n} images`));
          cb.onLog('Training… (the first step compiles the GPU kernels)');
          await t.run(ctl);
          cb.onDone({ step: t.step, stopped: ctl.state === 'stopping' });
        } catch (e) {
          cb.onError(e instanceof Error ? e.message : String(e));
        }
      })();
    },
    async pause() {
      control?.pause();
    },
    async resume() {
      control?.resume();
    },
    async stop() {
      control?.stop();
    },
    async saveNow() {
      if (!trainer) return null;
      const f = await trainer.exportLora();
      return Comlink.transfer(f, [f.buffer]);
    },
  };
}
