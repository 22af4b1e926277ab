// The worker side of the protocol: model loading, dataset decoding, validation and the run, on the worker's WebGPU device.
import * as Comlink from 'comlink';
import { acquireGpu, type Gpu } from '../engine/gpu.js';
import { loadDiffusers, loadSingleFile, type Pipeline, type RepoFiles } from '../model/pipeline.js';
import { blobSource, urlSource } from '../model/safetensors.js';
import { ClipTokenizer } from '../model/tokenizer.js';
import type { DatasetFile, DatasetReport, ModelSource, TrainerApi } from '../protocol/index.js';
import { planRun, PlanError } from './arithmetic.js';
import { assignBucket, makeBuckets } from './buckets.js';
import { validateConfig } from './config.js';
import { ImageDecodeError, type RgbaImage } from './images.js';
import { RunControl, Trainer, type TrainItem } from './trainer.js';

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

export function createTrainerApi(): TrainerApi {
  let gpu: Gpu | null = null;
  let pipeline: Pipeline | null = null;
  let items: TrainItem[] = [];
  let trainer: Trainer | null = null;
  let control: RunControl | null = null;
  const device = async () => (gpu ??= await acquireGpu());

  return {
    async init() {
      return (await device()).adapter;
    },

    async loadModel(source: ModelSource, onProgress) {
      const { backend } = await device();
      pipeline?.dispose();
      pipeline = null;
      const o = { onProgress: (p: { stage: string; loadedBytes: number; totalBytes: number }) => onProgress(p) };
      if (source.kind === 'tiny') pipeline = await loadDiffusers(backend, httpRepo(source.baseUrl, 'tiny demo model'), o);
      else if (source.kind === 'hub') pipeline = await loadDiffusers(backend, httpRepo(`${source.endpoint ?? 'https://huggingface.co'}/${source.repo}/resolve/${source.revision ?? 'main'}`, source.repo), o);
      else {
        const t = httpRepo(source.tokenizerUrl, 'CLIP tokenizer');
        const tok = ClipTokenizer.fromFiles(await t.text('vocab.json'), await t.text('merges.txt'));
        pipeline = await loadSingleFile(backend, blobSource(source.file), tok, o);
      }
      const tiny = pipeline.unet.config.blockChannels[0]! < 128;
      return { name: pipeline.name, weightBytes: pipeline.unet.weights.bytes + pipeline.clip.weights.bytes + pipeline.vae.weights.bytes, resolutionHint: tiny ? 64 : 512 };
    },

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

    async validateConfig(config: unknown) {
      const r = validateConfig(config);
      if (!r.ok) return r;
      try {
        return { ...r, plan: planRun(r.config, Math.max(1, items.length)) };
      } catch (e) {
        if (e instanceof PlanError) return { ok: false as const, errors: { [e.field]: e.message } };
        throw e;
      }
    },

    async start(config, cb) {
      if (!pipeline) throw new Error('Load a model first');
      if (!items.length) throw new Error('The dataset is empty: drop some images first');
      trainer?.dispose();
      control = new RunControl();
      const ctl = control;
      trainer = new Trainer(pipeline, config, items, {
        onMetrics: (m) => cb.onMetrics(m),
        onCheckpoint: (f, step) => cb.onCheckpoint(Comlink.transfer(f, [f.buffer]), step),
      });
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
