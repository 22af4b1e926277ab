// The run's saves list kept in OPFS: each kept save's LoRA bytes in a file of its own and one record (run name, the saves' steps, the validation curve, the per-image losses), so a reload loses none of them.
import type { ImageLoss } from '../protocol/index.js';
import { folder, listFiles, opfsMissing, readFile, readJson, remove, writeFile } from './opfs.js';
import type { KeptSave } from './saves.js';
import type { ValidationState } from './store.js';

/** What the page knows of the run's saves besides their bytes. */
export interface SavesRecord {
  runName: string;
  /** The kept saves' steps in step order; the bytes of each are in `save-<step>.safetensors`. */
  steps: number[];
  validation: ValidationState;
  imageLosses: Record<string, ImageLoss>;
}

const SAVES = ['saves'];
const RECORD = 'saves.json';
const fileOf = (step: number) => `save-${step}.safetensors`;

/** The bytes object each file was last written from (one session's writes): a save already on disk is not written again. */
const written = new Map<string, Uint8Array>();

/**
 * Keep `saves` as the run's saves list: the files it lacks are written first, then the record that
 * names them, then the files of saves no longer in the list are removed, so a crash at any point
 * leaves a record whose files are all there. An empty list removes everything.
 */
export async function writeSaves(record: Omit<SavesRecord, 'steps'>, saves: readonly KeptSave[]): Promise<void> {
  const missing = opfsMissing();
  if (missing) throw new Error(missing);
  const dir = (await folder(SAVES))!;
  const onDisk = await listFiles(dir);
  for (const s of saves) {
    const name = fileOf(s.step);
    if (written.get(name) === s.bytes && onDisk.get(name) === s.bytes.byteLength) continue;
    await writeFile(dir, name, s.bytes);
    written.set(name, s.bytes);
  }
  const r: SavesRecord = { ...record, steps: saves.map((s) => s.step) };
  await writeFile(dir, RECORD, JSON.stringify(r));
  const keep = new Set([RECORD, ...r.steps.map(fileOf)]);
  for (const name of onDisk.keys())
    if (!keep.has(name)) {
      await remove(dir, name);
      written.delete(name);
    }
}

/** A loss as JSON keeps it back as a number (a non-finite one was written as null). */
const lossOf = (v: unknown) => (typeof v === 'number' ? v : NaN);

/** The kept saves list with each save's bytes (a save whose file is gone is left out), or null when none is kept. */
export async function readSaves(): Promise<{ record: SavesRecord; saves: KeptSave[] } | null> {
  if (opfsMissing()) return null;
  const dir = await folder(SAVES, false);
  const r = dir && (await readJson<SavesRecord>(dir, RECORD));
  if (!dir || !r || !Array.isArray(r.steps) || !r.validation || !Array.isArray(r.validation.points)) return null;
  const saves: KeptSave[] = [];
  for (const step of r.steps) {
    const bytes = await readFile(dir, fileOf(step));
    if (bytes) saves.push({ step, bytes });
    if (bytes) written.set(fileOf(step), bytes);
  }
  const v = r.validation;
  const validation: ValidationState = { points: v.points.map((p) => ({ step: p.step, loss: lossOf(p.loss) })), best: v.best && { step: v.best.step, loss: lossOf(v.best.loss) }, images: v.images ?? {} };
  return { record: { ...r, validation, imageLosses: r.imageLosses ?? {} }, saves };
}

/** Forget the kept saves list and its files. */
export async function forgetSaves(): Promise<void> {
  if (opfsMissing()) return;
  const root = await folder([], false);
  if (root) await remove(root, SAVES[0]!);
  written.clear();
}
