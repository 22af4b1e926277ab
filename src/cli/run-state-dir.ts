// The CLI's run-state folder: `--save-state` keeps the run state beside the LoRA at every save, `--resume-state DIR` reads it back.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readRunStateSummary, type RunStateSummary } from '../training/run-state-file.js';

/** The file inside the folder. */
export const STATE_FILE = 'run-state.safetensors';

/** The folder `--save-state` writes for a LoRA saved at `out`: `name.safetensors` → `name-state/`. */
export function stateDirFor(out: string): string {
  return `${out.replace(/\.safetensors$/i, '')}-state`;
}

/** Write the state into the folder, replacing the last one only once the new one is whole (a crash mid-write keeps it). */
export function writeStateDir(dir: string, state: Uint8Array): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, STATE_FILE);
  writeFileSync(`${file}.partial`, state);
  renameSync(`${file}.partial`, file);
  return file;
}

/** The run state in a folder `--save-state` wrote (or the file itself), with its summary; clear errors for anything else. */
export async function readStateDir(path: string): Promise<{ file: Uint8Array; name: string; summary: RunStateSummary }> {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) throw new Error(`--resume-state ${path}: no such folder (pass the folder --save-state wrote beside the LoRA, e.g. my-lora-state)`);
  const name = st.isDirectory() ? join(path, STATE_FILE) : path;
  if (!existsSync(name)) throw new Error(`--resume-state ${path}: the folder has no ${STATE_FILE}; was it written by --save-state?`);
  const file = readFileSync(name);
  const summary = await readRunStateSummary(file);
  if (!summary) throw new Error(`--resume-state ${name}: a LoRA file, not a run state. Continue it with --resume ${name} (its weights go on training; the optimizer starts fresh)`);
  return { file, name, summary };
}
