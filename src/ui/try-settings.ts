// The Try-it panel's settings: defaults, per-field checks with the fix in words, and what one render or the X/Y grid asks the worker.
import { SAMPLE_DEFAULTS, sampleRequestErrors, type RenderFields, type SamplerKind } from '../protocol/index.js';

/** The settings a person sets on the panel (persisted with the page's settings); width and height 0: the training resolution. */
export interface TrySettings extends RenderFields {
  /** The LoRA's strength beside the base image, 0–1.5. */
  strength: number;
  /** The X/Y grid's rows, as typed: strengths separated by commas. */
  gridStrengths: string;
}

/** The worker's defaults, the size left to the training resolution (0). */
export const TRY_DEFAULTS: TrySettings = (({ strengths: _, ...d }) => ({ ...d, width: 0, height: 0, strength: 1, gridStrengths: '0, 0.5, 1, 1.5' }))(SAMPLE_DEFAULTS);

/** The samplers as the form names them. */
export const SAMPLER_LABELS: { value: SamplerKind; label: string }[] = [
  { value: 'euler', label: 'Euler' },
  { value: 'euler_a', label: 'Euler ancestral' },
  { value: 'ddim', label: 'DDIM' },
];

export const MAX_STRENGTH = 1.5;
/** The grid's size limit: each image is a full render (one row of strengths per LoRA column). */
export const MAX_GRID = { columns: 8, rows: 6 };

/**
 * Per-field errors of the settings (empty when they can render), each naming the problem and the fix: the
 * worker's own checks of a render request (shared through the protocol), and the panel's (strength slider, grid rows).
 */
export function tryErrors(s: TrySettings, trainingResolution: number): Partial<Record<keyof TrySettings, string>> {
  const { strength, gridStrengths: grid, ...fields } = s;
  const request = { ...fields, ...renderSize(s, trainingResolution), strengths: [strength] };
  const e: Partial<Record<keyof TrySettings, string>> = {};
  for (const [k, m] of Object.entries(sampleRequestErrors(request))) {
    if (k === 'strengths') e.strength = m;
    else if (k === 'width' || k === 'height') e[k] = `${m} (or leave it empty for the training size)`;
    else if (k in s) e[k as keyof TrySettings] = m;
  }
  const g = gridStrengths(grid);
  if (typeof g === 'string') e.gridStrengths = g;
  return e;
}

/** The grid's strengths from what was typed ("0, 0.5, 1"), or what is wrong with it. */
export function gridStrengths(text: string): number[] | string {
  const parts = text.split(/[,\s]+/).filter(Boolean);
  if (!parts.length) return 'List the strengths to compare, separated by commas (e.g. 0, 0.5, 1).';
  const vals = parts.map(Number);
  const bad = parts.find((p, i) => !(vals[i]! >= 0 && vals[i]! <= MAX_STRENGTH));
  if (bad !== undefined) return `“${bad}” is not a strength from 0 to ${MAX_STRENGTH}; separate strengths with commas.`;
  const unique = [...new Set(vals)];
  if (unique.length > MAX_GRID.rows) return `At most ${MAX_GRID.rows} strengths (got ${unique.length}): each is a full render per column.`;
  return unique;
}

/** The image size a render uses: the set one, or the training resolution for a side left empty. */
export function renderSize(s: TrySettings, trainingResolution: number): { width: number; height: number } {
  return { width: s.width || trainingResolution, height: s.height || trainingResolution };
}

/** One column of the grid: a LoRA (a save of the run, or a dropped file) and the strengths it renders. */
export interface GridColumn<L> {
  label: string;
  lora: L;
  /** The strengths this column asks the worker for (0 only in the first: strength 0 is the base model, the same for every LoRA). */
  render: number[];
}

/**
 * The grid's columns for these LoRAs, at most MAX_GRID.columns (the latest kept when there are more).
 * Strength 0 renders once: it is the base model whatever the LoRA, so the other columns reuse that image.
 */
export function gridPlan<L>(loras: { label: string; lora: L }[], strengths: number[]): { columns: GridColumn<L>[]; dropped: number } {
  const kept = loras.slice(-MAX_GRID.columns);
  const columns = kept.map((l, i) => ({ ...l, render: i === 0 ? strengths : strengths.filter((x) => x !== 0) }));
  return { columns, dropped: loras.length - kept.length };
}
