// The run to continue after a crash, kept in OPFS: its settings, its model, and the run-state file of its latest save (replaced at each save).
import type { RunMetrics, TrainConfig } from '../protocol/index.js';
import { folder, listFiles, opfsMissing, readFile, readJson, remove, writeFile } from './opfs.js';
import { deleteKeptImages } from './opfs-images.js';

/** Where the run's base model came from, as it can be found again after a reload (a dropped file by its name and size only). */
export type ModelRef =
  | { kind: 'tiny' }
  | { kind: 'hub'; repo: string; endpoint?: string; revision?: string }
  | { kind: 'file'; name: string; size: number };

/** What a run is, known when it starts. */
export interface RunIdentity {
  runName: string;
  config: TrainConfig;
  model: ModelRef;
  /** The model's name as the page shows it. */
  modelName: string;
  demo?: boolean;
}

/** A run that can be continued: who it is, and its latest save. */
export interface KeptRun extends RunIdentity {
  step: number;
  totalSteps: number;
  /** 'state': a run-state file (optimizer, RNG and data positions: the run goes on as if never stopped); 'lora': a LoRA file only (the optimizer starts fresh). */
  kind: 'state' | 'lora';
  /** The file holding the save's bytes. */
  file: string;
  savedAt: number;
  /** The steps' metrics up to the save, for the charts. */
  metrics: RunMetrics[];
}

const RUN = ['run'];
const RECORD = 'run.json';

/** Saves are written one after another in the order they came, never interleaved (reads of the page's view wait their turn too). */
let queue: Promise<unknown> = Promise.resolve();
export const serial = <T>(f: () => Promise<T>): Promise<T> => {
  const next = queue.then(f, f);
  queue = next.catch(() => {});
  return next;
};

/** The kept run, or null when there is none (or its save's file is gone). */
export async function keptRun(): Promise<KeptRun | null> {
  if (opfsMissing()) return null;
  const dir = await folder(RUN, false);
  const r = dir && (await readJson<KeptRun>(dir, RECORD));
  if (!dir || !r || typeof r.step !== 'number' || typeof r.file !== 'string') return null;
  const files = await listFiles(dir);
  return files.has(r.file) ? r : null;
}

/** The bytes of the kept run's latest save (a run-state or LoRA file, as `kind` says). */
export async function keptSave(r: KeptRun): Promise<Uint8Array> {
  const dir = await folder(RUN, false);
  const b = dir && (await readFile(dir, r.file));
  if (!b) throw new Error(`the saved state of run “${r.runName}” (step ${r.step}) is no longer in this browser's storage`);
  return b;
}

/**
 * Keep a save of the run: its bytes go to a file of their own first, then the record names it, then
 * the older save is removed, so a crash at any point leaves one complete save to continue from.
 */
export function keepSave(id: RunIdentity, save: { step: number; totalSteps: number; bytes: Uint8Array; kind: KeptRun['kind']; metrics: RunMetrics[] }): Promise<void> {
  return serial(async () => {
    const missing = opfsMissing();
    if (missing) throw new Error(missing);
    const dir = (await folder(RUN))!;
    const file = `save-${save.step}.${save.kind === 'state' ? 'state' : 'safetensors'}`;
    await writeFile(dir, file, save.bytes);
    const r: KeptRun = { ...id, step: save.step, totalSteps: save.totalSteps, kind: save.kind, file, savedAt: Date.now(), metrics: save.metrics.filter((m) => m.step <= save.step) };
    await writeFile(dir, RECORD, JSON.stringify(r));
    for (const name of (await listFiles(dir)).keys()) if (name !== RECORD && name !== file) await remove(dir, name);
  });
}

/** Forget the kept run (a new run starts, or it was discarded); with `images`, the kept images go too. */
export function forgetRun(images: boolean): Promise<void> {
  return serial(async () => {
    if (opfsMissing()) return;
    const root = await folder([], false);
    if (root) await remove(root, RUN[0]!);
    if (images) await deleteKeptImages();
  });
}

/** Whether the kept run can still go on: saved before its last step. */
export const unfinished = (r: KeptRun) => r.step < r.totalSteps;
