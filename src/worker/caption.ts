// Auto-captioning in the worker: the tagger downloaded on request (hub cache), opened once on WebGPU (wasm if that fails), each image tagged with progress, cancellable between images.
import type * as Ort from 'onnxruntime-web';
import type { HubRepoOptions } from '../model/hub-cache.js';
import type { TrainItem } from '../training/data.js';
import { chooseTags, taggedCaption, thresholdProblem } from '../training/tagger.js';
import { taggerFromHub } from '../training/tagger-hub.js';
import { openTagger, type Tagger, type TaggerProvider } from '../training/tagger-session.js';
import type { CaptionProgress, CaptionRequest, CaptionResult } from '../protocol/index.js';

/** How the worker reaches ONNX Runtime and the hub (the browser's by default; tests give Node's). */
export interface CaptionPlatform {
  ort(): Promise<typeof Ort>;
  /** Providers in the order tried. */
  providers: readonly TaggerProvider[];
  hub?: HubRepoOptions;
}

/** ORT's WebGPU build (it holds the wasm EP too), loaded only when captioning is asked for. */
export const BROWSER_CAPTION: CaptionPlatform = {
  ort: async () => {
    const ort = await import('onnxruntime-web/webgpu');
    ort.env.logLevel = 'error';
    return ort as unknown as typeof Ort;
  },
  // ORT opens its own WebGPU device: a tagger failure cannot take the training device with it.
  providers: [{ name: 'webgpu' }, { name: 'wasm' }],
};

const key = (r: CaptionRequest['tagger']) => `${r.endpoint ?? ''} ${r.repo.trim()} ${r.revision ?? 'main'}`;

/** The request's problems in words (refused before anything downloads), or null. */
function requestProblem(r: CaptionRequest): string | null {
  if (!r.tagger.repo.trim()) return 'Name the tagger repository (for example SmilingWolf/wd-vit-tagger-v3).';
  return thresholdProblem(r.threshold) ?? (r.characterThreshold !== undefined ? thresholdProblem(r.characterThreshold, 'The character threshold') : null);
}

/** One tagger kept open between requests for the same repository. */
export class CaptionService {
  private open: { key: string; tagger: Tagger; hub: CaptionResult['hub'] } | null = null;
  /** The running request's: aborted by `cancel`, looked at before each image. */
  private abort: AbortController | null = null;

  constructor(private readonly platform: CaptionPlatform) {}

  private async tagger(r: CaptionRequest, onProgress: (p: CaptionProgress) => void): Promise<{ tagger: Tagger; hub: CaptionResult['hub']; reused?: true }> {
    // Still open from an earlier request: no file is read at all.
    if (this.open?.key === key(r.tagger)) return { tagger: this.open.tagger, hub: { cachedFiles: 0, downloadedFiles: 0, downloadedBytes: 0, uncachedFiles: 0 }, reused: true };
    await this.release();
    const files = await taggerFromHub(r.tagger, {
      ...this.platform.hub,
      onProgress: (p) => onProgress({ stage: `Downloading the tagger: ${p.stage}`, done: 0, total: 0, loadedBytes: p.loadedBytes, totalBytes: p.totalBytes }),
    });
    onProgress({ stage: 'Opening the tagger', done: 0, total: 0 });
    const tagger = await openTagger(await this.platform.ort(), files, this.platform.providers);
    this.open = { key: key(r.tagger), tagger, hub: files.report };
    return this.open;
  }

  /** Stop the running request before its next image; it resolves with the images captioned so far and `cancelled`. Nothing when none runs. */
  cancel(): void {
    this.abort?.abort();
  }

  /**
   * Tag `items` (all, or those named) and give each its caption; the items' captions are replaced.
   * Cancelled, it stops before the next image and returns the captions made so far (also set on the items).
   */
  async caption(items: TrainItem[], r: CaptionRequest, onProgress: (p: CaptionProgress) => void): Promise<CaptionResult> {
    const problem = requestProblem(r);
    if (problem) throw new Error(problem);
    const wanted = r.names ? new Set(r.names) : null;
    const chosen = items.filter((i) => !wanted || wanted.has(i.name));
    if (!chosen.length) throw new Error('There are no images to caption: drop some images first.');
    if (this.abort) throw new Error('Captioning is already running: wait for it to finish (or cancel it) before starting again.');
    const abort = (this.abort = new AbortController());
    try {
      const { tagger, hub, reused } = await this.tagger(r, onProgress);
      const { captions, cancelled } = await this.tagEach(tagger, chosen, r, onProgress, abort.signal);
      return { captions, provider: tagger.provider, size: tagger.size, hub, ...(reused ? { reused } : {}), ...(cancelled ? { cancelled } : {}), ...(tagger.fallbackNote ? { note: `WebGPU was not used (${tagger.fallbackNote}); the tagger ran on the CPU (wasm).` } : {}) };
    } finally {
      this.abort = null;
    }
  }

  /** Tag the images one by one with progress, until done or `signal` aborts ("Cancelled at image k of n"). */
  private async tagEach(tagger: Tagger, chosen: TrainItem[], r: CaptionRequest, onProgress: (p: CaptionProgress) => void, signal: AbortSignal) {
    const captions: CaptionResult['captions'] = [];
    for (const [n, it] of chosen.entries()) {
      if (signal.aborted) return { captions, cancelled: `Cancelled at image ${n + 1} of ${chosen.length}: ${n} captioned, the others keep their captions` };
      onProgress({ stage: `Tagging ${it.name}`, done: n, total: chosen.length });
      const found = chooseTags(await tagger.score(it.image), tagger.tags, r);
      it.caption = taggedCaption(found, r.triggerWord);
      captions.push({ name: it.name, caption: it.caption, tags: found });
    }
    onProgress({ stage: 'Tagged', done: chosen.length, total: chosen.length });
    return { captions };
  }

  async release(): Promise<void> {
    const t = this.open;
    this.open = null;
    await t?.tagger.release();
  }
}
