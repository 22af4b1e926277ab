// Loading a base model in the worker (tiny demo over HTTP, a hub repo through the browser cache, a dropped file), with per-part progress.
import type { Backend } from '../engine/backend.js';
import { hubFileUrl, openHubRepo, type HubLoadReport, type HubRef } from '../model/hub-cache.js';
import { httpRepo } from '../model/http-repo.js';
import { loadDiffusers, loadSingleFile, type LoadProgress as PartProgress, type Pipeline, type RepoFiles } from '../model/pipeline.js';
import { blobSource, openSafetensors } from '../model/safetensors.js';
import { TINY_RESOLUTION } from '../model/tiny.js';
import { ClipTokenizer } from '../model/tokenizer.js';
import type { HubDownloadPlan, LoadProgress, ModelInfo, ModelSource } from '../protocol/index.js';
import { LoadTracker, partOfKey } from './load-progress.js';

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
export async function hubDownloadPlan(ref: HubRef): Promise<HubDownloadPlan> {
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

/** A loaded model with what the page is told about it. */
export interface LoadedModel {
  pipeline: Pipeline;
  info: ModelInfo;
}

/** Load `source` onto the backend's device; the progress carries each part's bytes. */
export async function loadModel(backend: Backend, source: ModelSource, onProgress: (p: LoadProgress) => void): Promise<LoadedModel> {
  const tracker = new LoadTracker();
  const o = { onProgress: (p: PartProgress) => onProgress(tracker.update(p)) };
  let hub: HubLoadReport | undefined;
  let pipeline: Pipeline;
  if (source.kind === 'tiny') pipeline = await loadDiffusers(backend, tracked(httpRepo(source.baseUrl, 'tiny demo model'), tracker), o);
  else if (source.kind === 'hub') {
    const repo = await openHubRepo(source, o);
    pipeline = await loadDiffusers(backend, tracked(repo, tracker), o);
    hub = repo.report();
  } else {
    const t = httpRepo(source.tokenizerUrl, 'CLIP tokenizer');
    const tok = ClipTokenizer.fromFiles(await t.text('vocab.json'), await t.text('merges.txt'));
    // The File is a handle on the disk: tensors are read as byte-range slices, never the whole file.
    await expectSingleFile(source.file, tracker);
    pipeline = await loadSingleFile(backend, blobSource(source.file), tok, o);
  }
  return { pipeline, info: modelInfo(pipeline, source, tracker, hub) };
}

/** What the page shows of a loaded model: size, notes on how it was read, whether it is the demo. */
function modelInfo(p: Pipeline, source: ModelSource, tracker: LoadTracker, hub: HubLoadReport | undefined): ModelInfo {
  const tiny = p.unet.config.blockChannels[0]! < 128;
  const variants = p.files?.filter((f) => f.includes('.fp16.')).length ?? 0;
  const notes = [...(p.info?.notes ?? []), ...(variants ? [`${variants === 3 ? 'all three' : variants} weight files taken as their fp16 variants (half the download)`] : [])];
  const weightBytes = p.unet.weights.bytes + p.clip.weights.bytes + p.vae.weights.bytes;
  return { name: p.name, weightBytes, resolutionHint: tiny ? TINY_RESOLUTION : 512, hub, components: tracker.finished(), notes, demo: source.kind === 'tiny' || tiny };
}
