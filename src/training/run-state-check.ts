// Whether a run state may continue with these settings and this dataset: what changed, in words, refused or noted.
import type { TrainConfig } from './config.js';
import type { DatasetFingerprint, RunStateFacts } from './run-state-file.js';

/** Settings that change nothing the steps compute (when to save or preview, what to call the file): free to change. */
const FREE: ReadonlySet<string> = new Set(['saveEvery', 'sampleEvery', 'samplePrompt', 'sampleSteps', 'sampleGuidance', 'savePrecision', 'runName', 'validateEvery']);
/** Settings that trade memory for time; the steps compute the same values, possibly not to the last bit: allowed, with a note. */
const NOTED: ReadonlySet<string> = new Set(['gradientCheckpointing', 'cacheTextEncoderOutputs']);

const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : String(v));

/** What a continued run would do differently: `refused` ends the start, `notes` go to the log. */
export interface RunStateCheck {
  refused: string[];
  notes: string[];
}

/** Each setting that differs from the run state's, by field name: `field: saved → now`. */
export function configChanges(saved: TrainConfig, now: TrainConfig): RunStateCheck {
  const out: RunStateCheck = { refused: [], notes: [] };
  const keys = new Set([...Object.keys(saved), ...Object.keys(now)]);
  for (const k of keys) {
    const a = (saved as unknown as Record<string, unknown>)[k];
    const b = (now as unknown as Record<string, unknown>)[k];
    if (JSON.stringify(a) === JSON.stringify(b) || FREE.has(k)) continue;
    const line = `${k}: ${show(a)} → ${show(b)}`;
    if (NOTED.has(k)) out.notes.push(`${line} (memory and speed only; the values may differ in the last bits from an uninterrupted run)`);
    else out.refused.push(line);
  }
  return out;
}

/** A short list of names: the first three, then how many more. */
function names(list: string[]): string {
  return list.slice(0, 3).join(', ') + (list.length > 3 ? ` and ${list.length - 3} more` : '');
}

/** How the dataset differs from the one the run trained on: images missing, new, resized, re-captioned, changed pixels, or reordered. */
export function datasetChanges(saved: DatasetFingerprint, now: DatasetFingerprint): string[] {
  const before = new Map(saved.images.map((im) => [im.name, im]));
  const after = new Map(now.images.map((im) => [im.name, im]));
  const missing = saved.images.filter((im) => !after.has(im.name)).map((im) => im.name);
  const added = now.images.filter((im) => !before.has(im.name)).map((im) => im.name);
  const kept = now.images.filter((im) => before.has(im.name));
  const differ = (pick: (im: DatasetFingerprint['images'][number]) => unknown) => kept.filter((im) => pick(im) !== pick(before.get(im.name)!)).map((im) => im.name);
  const out: string[] = [];
  if (missing.length) out.push(`${missing.length} of the run's images missing (${names(missing)})`);
  if (added.length) out.push(`${added.length} new images (${names(added)})`);
  const sized = differ((im) => `${im.width}x${im.height}`);
  if (sized.length) out.push(`other sizes for ${names(sized)}`);
  const pixels = differ((im) => im.pixels).filter((n) => !sized.includes(n));
  if (pixels.length) out.push(`other pixels for ${names(pixels)}`);
  const captions = differ((im) => im.caption);
  if (captions.length) out.push(`other captions for ${names(captions)}`);
  const repeats = differ((im) => im.repeats);
  if (repeats.length) out.push(`other repeats for ${names(repeats)}`);
  if (!out.length && saved.images.some((im, i) => im.name !== now.images[i]!.name)) out.push('the same images in another order');
  return out;
}

/** A run state that cannot continue with these settings or this dataset, with every difference named. */
export class RunStateMismatchError extends Error {
  constructor(readonly source: string, readonly changes: string[]) {
    super(
      `${source} cannot continue exactly: ${changes.join('; ')}. Set the settings and images back to the run's ` +
        '(the run state holds its settings), or continue from the run\'s LoRA file instead: its weights go on training and the optimizer starts fresh.',
    );
    this.name = 'RunStateMismatchError';
  }
}

/** Every difference between the run state and this start, refused ones thrown (RunStateMismatchError); returns the notes. */
export function checkRunState(facts: RunStateFacts, config: TrainConfig, dataset: DatasetFingerprint, modelName: string, name: string): string[] {
  const c = configChanges(facts.config, config);
  const refused = [...c.refused.map((l) => `setting ${l}`), ...datasetChanges(facts.fingerprint, dataset).map((l) => `dataset: ${l}`)];
  if (refused.length) throw new RunStateMismatchError(name, refused);
  const notes = [...c.notes];
  if (facts.modelName !== modelName) notes.push(`${name} was saved on the base model "${facts.modelName}"; "${modelName}" is loaded. Its LoRA layout fits; continue only if this is the same model.`);
  return notes;
}
