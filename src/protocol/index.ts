// The worker API: the only module both the page and the training worker import. It takes types and a few pure
// values from the layers below; nothing below imports it (training/, model/, engine/ know nothing of the page).
import type { AdapterReport } from '../engine/gpu.js';
import type { TrainConfig, ValidationResult } from '../training/config.js';
import type { RunPlan } from '../training/arithmetic.js';
import type { StepMetrics } from '../training/loop.js';
import type { CachedRepo, HubLoadReport } from '../model/hub-cache.js';
import type { LoadProgress as PartLoadProgress } from '../model/pipeline.js';
import type { MemoryEstimate } from '../training/memory.js';
import type { MemorySuggestion } from '../training/memory-advice.js';
import type { SampleLora, SampleProgress, SampleRequest, SamplerKind, StrengthImage } from '../training/sample-settings.js';
import type { FoundTag } from '../training/tagger.js';
import type { ValidationPoint } from '../training/validation.js';
import type { ImageLoss } from '../training/image-losses.js';

export type { AdapterReport, TrainConfig, ValidationResult, RunPlan, StepMetrics, MemoryEstimate, CachedRepo, MemorySuggestion, FoundTag };
export type { SampleLora, SampleProgress, SampleRequest, SamplerKind, StrengthImage };
export type { ValidationPoint, ImageLoss };
export { VALIDATION_TIMESTEPS } from '../training/validation.js';

// Facts the page shares with the worker, from the layer that owns each (pure values and functions, no GPU):
// the settings' defaults and choices, the tiny demo's size, byte counts in words, the hub's address, and the
// rules for pairing dropped files with captions (the page reads the files, the worker decodes them).
export { CHOICES, DEFAULT_CONFIG, NETWORK_TYPES, OPTIMIZERS, OPTIMIZER_PRESETS, type OptimizerKind } from '../training/config.js';
export { SCHEDULERS } from '../training/schedule.js';
export { bucketSideLimits } from '../training/buckets.js';
export { TINY_RESOLUTION, TINY_DEMO_PRESET } from '../model/tiny.js';
export { formatBytes } from '../engine/bytes.js';
export { HF_ENDPOINT } from '../model/hub-cache.js';
export { MAX_STRENGTHS, SAMPLE_DEFAULTS, SAMPLERS, sampleRequestErrors } from '../training/sample-settings.js';
export { infotext, PNG_KEYS, readSettingsPng, settingsPng, type ImageSettings, type RenderFields } from '../training/png-settings.js';
export { DEFAULT_CHARACTER_THRESHOLD, DEFAULT_TAGGER_REPO, DEFAULT_TAG_THRESHOLD, thresholdProblem } from '../training/tagger.js';
export { captionsZip, captionPath } from '../training/caption-export.js';
export { readRunStateSummary, type RunStateSummary, type DatasetFingerprint, type ImageFingerprint } from '../training/run-state-file.js';
export { captionOf, folderOf, isHiddenPath, pairFiles, folderLine, folderSummary, mergeSkips, REASON, stemPath, type SetFile, type Skip } from '../training/dataset-files.js';

/** The worker's GPU adapter, as the page shows it (the page opens no GPU device of its own). */
export interface AdapterInfo extends AdapterReport {
  /** It computes on the CPU (SwiftShader, llvmpipe, lavapipe, or one the browser calls a fallback): training is very slow. */
  software: boolean;
}

/** The settings that decide which bucket each image trains in. */
export type BucketSettings = Pick<TrainConfig, 'resolution' | 'enableBuckets' | 'bucketStep' | 'minBucket' | 'maxBucket' | 'maxAspect'>;

/** A bucket the dataset's images train in, with how many do. */
export interface BucketCount {
  width: number;
  height: number;
  images: number;
}

/** The memory a run needs against what the adapter allows. */
export interface MemoryReport extends MemoryEstimate {
  /** The adapter's largest storage binding; a bigger buffer cannot run at all. */
  maxBindingBytes: number;
  /** The adapter's largest buffer. */
  maxBufferBytes: number;
  /** The forecast's largest buffer as the pool allocates it (rounded up to its size class). */
  largestBufferAllocated: number;
  /** What is known of the device's memory (WebGPU does not report it), in words. */
  deviceMemory: string;
  /** Set when the run cannot work or probably will not fit, in words. */
  warning: string | null;
  /** With a warning: single changes of settings that the forecast says would fit. */
  suggestions: MemorySuggestion[];
  /** False while a run goes on: changes are looked for after it (forecasts would hold up its steps). */
  checked: boolean;
}

/** A step's metrics with what the device holds, measured by the worker's buffer pool. */
export interface RunMetrics extends StepMetrics {
  /** Live plus cached (free, kept for reuse) buffer bytes now. */
  heldBytes: number;
  /** The most bytes held at once since the run started (weights included): compare with the forecast's peak. */
  peakHeldBytes: number;
}

/** Where the base model comes from. */
export type ModelSource =
  | { kind: 'tiny'; baseUrl: string }
  | { kind: 'hub'; repo: string; endpoint?: string; revision?: string }
  | { kind: 'file'; file: File; tokenizerUrl: string };

export interface ModelInfo {
  name: string;
  /** GPU bytes the frozen weights take. */
  weightBytes: number;
  resolutionHint: number;
  /** Hub models only: which files came from the browser cache and which were downloaded. */
  hub?: HubLoadReport;
  /** Each part's bytes on the GPU (the last progress report can arrive after the result). */
  components: ComponentProgress[];
  /** What the person should know about how the model was read (EMA weights skipped, values assumed, fp16 variants taken). */
  notes: string[];
  /** The bundled demo model (random weights): its previews are noise and its LoRAs are for trying the app only. */
  demo: boolean;
}

/** One dropped image and its caption (bytes move to the worker; nothing leaves the machine). */
export interface DatasetFile {
  /** Its path in the dropped set (`train/10_cat/1.png`): the image's identity in the dataset. */
  name: string;
  bytes: ArrayBuffer;
  caption: string;
  /** Times it is drawn per epoch, from its kohya `N_` folder; absent: the Repeats setting. */
  repeats?: number;
  /** Marked for validation: held out of training when the validation setting is 'holdout'. */
  validation?: boolean;
}

/** The decoded dataset: each image by path with its size; images that did not decode, by path, with the reason. */
export interface DatasetReport {
  images: { name: string; width: number; height: number }[];
  skipped: { name: string; reason: string }[];
}

/** Bytes so far of a total (0 when unknown): the one progress figure of loads, as the model layer reports it. */
export type ByteProgress = Pick<PartLoadProgress, 'loadedBytes' | 'totalBytes'>;

/** A model part (U-Net, text encoder, VAE) as it downloads and moves to the GPU: its weight bytes on the GPU of its total (0 while unknown). */
export interface ComponentProgress extends ByteProgress {
  name: string;
  /** Hub files only: bytes downloaded of the part's weight file (total 0 when unknown). */
  downloaded?: ByteProgress;
  done: boolean;
}

/** The model layer's progress (a stage in words, bytes so far of the total) with each part's share. */
export interface LoadProgress extends PartLoadProgress {
  /** Per-part progress, in loading order. */
  components?: ComponentProgress[];
}

/** What a hub load will download, and whether this browser has room for it. */
export interface HubDownloadPlan {
  /** The weight and config files not yet in the browser cache, with their sizes (0 when the server did not say). */
  files: { path: string; bytes: number }[];
  bytes: number;
}

/** Where a run is, as the worker knows it: the page shows this and enables its buttons by it. */
export type RunPhase = 'idle' | 'caching' | 'compiling' | 'running' | 'paused' | 'stopping' | 'done' | 'failed';

/** The run's state, sent by the worker at every change (each compiled pipeline counts as one). */
export interface RunState {
  phase: RunPhase;
  /** When this phase began (Date.now() in the worker; same clock as the page's): the page counts the elapsed time from it. */
  since: number;
  /** caching: images encoded so far, of `total`; compiling: GPU pipelines compiled so far, of the `total` the steps use (absent until counted). */
  done?: number;
  total?: number;
  /** A pause was asked for; it takes effect after the current step or image. */
  pausing?: boolean;
  /** done: the last step trained, whether Stop ended the run, and the step of the LoRA this run saved last (0: none, an earlier LoRA is untouched). */
  step?: number;
  stopped?: boolean;
  savedStep?: number;
  /** failed: what went wrong. */
  message?: string;
}

export interface RunCallbacks {
  /** Every change of the run's phase; the first comes before `start` resolves. */
  onState(s: RunState): void;
  onMetrics(m: RunMetrics): void;
  /**
   * A save: the LoRA file, and the run-state file of the same step (keep it to continue the run exactly:
   * pass it to `start` as `continueFrom`; `readRunStateSummary` tells its step, settings and dataset).
   */
  onCheckpoint(file: Uint8Array, step: number, state?: Uint8Array): void;
  /** A preview rendered with the LoRA so far: RGBA bytes, row-major. */
  onPreview(image: { width: number; height: number; data: Uint8ClampedArray }, step: number, prompt: string): void;
  onLog(message: string): void;
  /** The validation loss every `plan.validateEvery` steps and at the end (validation on); `best`: the lowest so far, whose LoRA is saved. */
  onValidation?(v: ValidationPoint): void;
  /** The mean training loss so far of each image the step trained on (sent with every step, before its metrics). */
  onImageLosses?(losses: ImageLoss[], step: number): void;
  onDone(result: { step: number; stopped: boolean }): void;
  onError(message: string): void;
}

/** A render's images, one per requested strength in the request's order, and what to know about the LoRA (modules skipped, settings read from its metadata). */
export interface SampleResult {
  images: StrengthImage[];
  notes: string[];
}

/** Captions from a WD14-style tagger (a Hugging Face repository holding model.onnx and selected_tags.csv). */
export interface CaptionRequest {
  tagger: { repo: string; endpoint?: string; revision?: string };
  /** General tags scoring at least this are kept (0-1; 0.35 is usual). */
  threshold: number;
  /** Character tags need this; the general threshold when absent. */
  characterThreshold?: number;
  /** Put first in every caption ('' for none). */
  triggerWord: string;
  /** The images to caption, by name; every image when absent. */
  names?: string[];
}

export interface CaptionProgress extends Partial<ByteProgress> {
  /** What is happening, in words (downloading, opening, tagging an image). */
  stage: string;
  /** Images tagged so far, of `total` (0 of 0 before tagging starts). */
  done: number;
  total: number;
}

export interface CaptionResult {
  /** Each tagged image's new caption (also set in the worker's dataset) and the tags with their scores. */
  captions: { name: string; caption: string; tags: FoundTag[] }[];
  /** Where the tagger ran: WebGPU, or the CPU (wasm) when WebGPU could not take it. */
  provider: 'webgpu' | 'wasm';
  /** The tagger's input side (448 for the wd taggers). */
  size: number;
  /** Which tagger files came from the browser cache and which were downloaded (none when `reused`). */
  hub: HubLoadReport;
  /** The tagger was still open from an earlier request. */
  reused?: boolean;
  /** Set when WebGPU was passed over, with why. */
  note?: string;
  /** Set when `cancelCaption` stopped it ("Cancelled at image k of n: …"); `captions` holds the images done before. */
  cancelled?: string;
}

/** What the worker exposes over Comlink. */
export interface TrainerApi {
  /** The worker's GPU adapter (opening its device); rejects when WebGPU has none, with the reason. */
  adapter(): Promise<AdapterInfo>;
  /** Load a model; the one loaded before stays until the new one has loaded (a failed load keeps it). Refused during a run. */
  loadModel(source: ModelSource, onProgress: (p: LoadProgress) => void): Promise<ModelInfo>;
  /** Hub repositories downloaded into this browser's cache, with their sizes. */
  cachedModels(): Promise<CachedRepo[]>;
  /** The files a hub load would download (what is already cached is left out), asked with HEAD requests before any download. */
  hubDownloadPlan(source: Extract<ModelSource, { kind: 'hub' }>): Promise<HubDownloadPlan>;
  /** Delete every downloaded hub model from this browser (a loaded model stays loaded). */
  deleteCachedModels(): Promise<void>;
  setDataset(files: DatasetFile[]): Promise<DatasetReport>;
  /** Change one image's caption (no re-decoding). */
  setCaption(name: string, caption: string): Promise<void>;
  /** Mark one image for validation or not (no re-decoding): marked images are held out when validation is 'holdout'. */
  setValidationMark(name: string, validation: boolean): Promise<void>;
  /** The buckets the dataset's images train in with these settings, as the trainer assigns them; null while the settings make no grid. */
  bucketCounts(settings: BucketSettings): Promise<BucketCount[] | null>;
  /** Per-field errors, the run's arithmetic, and (with a model loaded) its GPU memory estimate. */
  validateConfig(config: unknown): Promise<ValidationResult & { plan?: RunPlan; memory?: MemoryReport }>;
  /**
   * Start a run. `continueFrom`: a run-state file (`onCheckpoint`'s `state`; the run goes on exactly from its
   * step, refused with every difference named when the settings or dataset changed) or an earlier LoRA file
   * (same targets; its own rank; the optimizer starts fresh, which the log says). Refused while a run is active or a model loads.
   */
  start(config: TrainConfig, callbacks: RunCallbacks, continueFrom?: Uint8Array): Promise<void>;
  /** Pause after the current step or image (RunState.pausing until then). */
  pause(): Promise<void>;
  /** Go on with a paused run (not to be confused with continuing from a file: that is `start`'s `continueFrom`); after a Try-it render in progress, which uses the paused LoRA. */
  unpause(): Promise<void>;
  /** Stop after the current step or image; the run saves its LoRA at the end. */
  stop(): Promise<void>;
  saveNow(): Promise<Uint8Array | null>;
  /**
   * Render the request once per strength from the same seed (strength 0: the base model), with the run's LoRA
   * (no re-upload) or a dropped kohya file; `onProgress` after every denoising step. Refused while a model
   * loads, while a run's steps go on (pause it first), or while another render runs; bad fields are named.
   */
  sample(request: SampleRequest, onProgress: (p: SampleProgress) => void): Promise<SampleResult>;
  /** Stop the running render after its current denoising step: `sample` rejects with "Cancelled at step k of n". Nothing when none runs. */
  cancelSample(): Promise<void>;
  /** Caption the dataset's images with a tagger (downloaded on first use, then from the hub cache); refused during a run. */
  caption(request: CaptionRequest, onProgress: (p: CaptionProgress) => void): Promise<CaptionResult>;
  /** Stop captioning before its next image: `caption` resolves with the captions made so far and `cancelled`. Nothing when none runs. */
  cancelCaption(): Promise<void>;
}
