// The run-state file: everything a run needs to continue exactly where a save left it, as one safetensors file
// (float32 tensors, the facts as JSON in its metadata), and a summary of it the page can read without a GPU.
import { bytesSource, openSafetensors, writeSafetensors, type TensorToWrite } from '../model/safetensors.js';
import type { TrainConfig } from './config.js';

/** The metadata key that marks a run-state file (a plain LoRA file has none) and holds its facts as JSON. */
export const RUN_STATE_KEY = 'lorasmith_run_state';
/** The format's version: a file of another version is refused with that said. */
export const RUN_STATE_VERSION = 1;

/** One image as the run saw it: its path, its size in pixels, its caption, its repeats, and a hash of its pixels. */
export interface ImageFingerprint {
  name: string;
  width: number;
  height: number;
  caption: string;
  repeats?: number;
  /** FNV-1a (32-bit) of the decoded RGBA bytes, in hex. */
  pixels: string;
}

/** The dataset a run trained on, image by image, in the run's order. */
export interface DatasetFingerprint {
  images: ImageFingerprint[];
}

/** Where the run's RNG streams stand: every stream is forked by name from the seed, so the names' counters say it all. */
export interface RngPosition {
  seed: number;
  /** The epoch being drawn (the stream `epoch${n}`). */
  epoch: number;
  /** Batches of that epoch already drawn (streams `b${i}s${j}` below it are used up). */
  batchInEpoch: number;
}

/** One parameter arena's layout: its flat size and each parameter's element offset and size. */
export interface ArenaLayout {
  numel: number;
  params: Record<string, [offset: number, size: number]>;
  /** The optimizer state buffers saved for it (tensor `arena.<part>.<key>`). */
  state: string[];
}

/** The facts of a run-state file (its JSON metadata). */
export interface RunStateFacts {
  version: number;
  /** Optimizer updates done; the run continues with update step + 1. */
  step: number;
  totalSteps: number;
  rng: RngPosition;
  /** The schedule's position is the step: (update index) => lr, so it needs nothing of its own. */
  optimizer: TrainConfig['optimizer'];
  config: TrainConfig;
  fingerprint: DatasetFingerprint;
  modelName: string;
  /** The LoRA modules by kohya name with their rank and alpha (a continued file's may differ from the settings'). */
  modules: { name: string; rank: number; alpha: number }[];
  arenas: { unet: ArenaLayout; te: ArenaLayout | null };
  /** kohya's ss_session_id and the run's start, kept so the continued run's files say the same. */
  sessionId: string;
  startedAt: number;
  savedAt: number;
  /** What the run tracks beside training (validation history, per-image losses), as plain JSON: its owner fills and reads it. */
  tracking?: unknown;
}

/** What the page shows of a run-state file before continuing it. */
export interface RunStateSummary {
  step: number;
  totalSteps: number;
  config: TrainConfig;
  fingerprint: DatasetFingerprint;
  modelName: string;
  savedAt: number;
}

/** A run-state file read back: its facts and its float32 tensors by name. */
export interface RunStateContents {
  facts: RunStateFacts;
  tensors: Map<string, Float32Array>;
}

/** FNV-1a, 32-bit, of the bytes, as 8 hex digits. */
function fnv1a(bytes: ArrayLike<number>): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

/** Pixel hashes by image data: a save hashes each image once per run, not once per save. */
const pixelHashes = new WeakMap<object, string>();

/** The dataset's fingerprint: names, sizes, captions (as they are now), repeats and a hash of each image's pixels. */
export function datasetFingerprint(items: readonly { name: string; caption: string; repeats?: number; image: { width: number; height: number; data: Uint8Array | Uint8ClampedArray } }[]): DatasetFingerprint {
  const hash = (data: Uint8Array | Uint8ClampedArray) => {
    let h = pixelHashes.get(data);
    if (h === undefined) pixelHashes.set(data, (h = fnv1a(data)));
    return h;
  };
  return {
    images: items.map((it) => ({
      name: it.name, width: it.image.width, height: it.image.height, caption: it.caption,
      ...(it.repeats !== undefined ? { repeats: it.repeats } : {}),
      pixels: hash(it.image.data),
    })),
  };
}

/** Write the file: the facts as metadata, each tensor as F32 of shape [length]. */
export function writeRunStateFile(facts: RunStateFacts, tensors: ReadonlyMap<string, Float32Array>): Uint8Array {
  const list: TensorToWrite[] = [...tensors].map(([name, data]) => ({ name, dtype: 'F32', shape: [data.length], data }));
  return writeSafetensors(list, { [RUN_STATE_KEY]: JSON.stringify(facts) });
}

/** The facts of a run-state file, or null for another safetensors file (a plain LoRA); throws on a run-state file it cannot read. */
async function readFacts(bytes: Uint8Array, name: string): Promise<{ facts: RunStateFacts | null; file: Awaited<ReturnType<typeof openSafetensors>> }> {
  const file = await openSafetensors(bytesSource(bytes, name));
  const raw = file.metadata[RUN_STATE_KEY];
  if (raw === undefined) return { facts: null, file };
  let facts: RunStateFacts;
  try {
    facts = JSON.parse(raw) as RunStateFacts;
  } catch {
    throw new Error(`${name}: its run state (metadata "${RUN_STATE_KEY}") is not valid JSON: the file is damaged. Continue from the run's LoRA file instead (the optimizer then starts fresh).`);
  }
  if (facts.version !== RUN_STATE_VERSION)
    throw new Error(`${name}: a run-state file of format version ${facts.version}; this version of LoRASmith reads version ${RUN_STATE_VERSION}. Continue from the run's LoRA file instead (the optimizer then starts fresh).`);
  return { facts, file };
}

/** Read a run-state file with its tensors; null when the bytes are another safetensors file (a plain LoRA). */
export async function readRunStateFile(bytes: Uint8Array, name = 'The run-state file'): Promise<RunStateContents | null> {
  const { facts, file } = await readFacts(bytes, name);
  if (!facts) return null;
  const tensors = new Map<string, Float32Array>();
  for (const k of file.tensors.keys()) tensors.set(k, await file.readTensor(k));
  return { facts, tensors };
}

/** Whether the bytes are a run-state file (a plain LoRA file is not); throws only on bytes that are not safetensors. */
export async function isRunStateFile(bytes: Uint8Array): Promise<boolean> {
  return (await openSafetensors(bytesSource(bytes, 'file'))).metadata[RUN_STATE_KEY] !== undefined;
}

/** The step, total steps, settings and dataset of a run-state file (no GPU, no tensor read); null for a plain LoRA file. */
export async function readRunStateSummary(bytes: Uint8Array): Promise<RunStateSummary | null> {
  const { facts } = await readFacts(bytes, 'The run-state file');
  if (!facts) return null;
  const { step, totalSteps, config, fingerprint, modelName, savedAt } = facts;
  return { step, totalSteps, config, fingerprint, modelName, savedAt };
}
