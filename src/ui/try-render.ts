// Try-it renders: which LoRA each image uses, the worker's sample calls with per-step progress and cancel, and the PNGs that come back.
import * as Comlink from 'comlink';
import { settingsPng, type ImageSettings, type SampleLora, type SampleProgress } from '../protocol/index.js';
import { gridPlan, gridStrengths, renderSize, tryErrors, type TrySettings } from './try-settings.js';
import { revokeImages, useTry, type TryImage } from './try-store.js';
import { useApp } from './store.js';
import { trainer } from './worker.js';

/** A LoRA the panel can render with, and how it names it in the settings it writes into the PNG. */
export interface LoraPick {
  label: string;
  lora: SampleLora;
}

/**
 * The run's LoRA: a paused or finished run's network is still in the worker (nothing to send; paused, it is
 * as trained so far); otherwise (recovered after a reload, a later run stopped before its first step) its bytes go.
 */
export function runLora(): LoraPick | null {
  const { lora: l, run, metrics } = useApp.getState();
  if (!l) return null;
  const inWorker = !l.recovered && (run.status === 'paused' || (run.status === 'done' && !!run.state?.savedStep));
  const step = run.status === 'paused' ? (metrics.at(-1)?.step ?? l.step) : l.step;
  return { label: `${l.runName} step ${step}`, lora: inWorker ? { source: 'trained' } : { source: 'file', bytes: l.bytes, name: `${l.runName}.safetensors` } };
}

/** The LoRA the side-by-side render uses: the run's, or the dropped file chosen. */
export function chosenLora(): LoraPick | null {
  const { use, files } = useTry.getState();
  const f = files.find((x) => x.name === use);
  return f ? { label: f.name, lora: { source: 'file', bytes: f.bytes, name: f.name } } : runLora();
}

/** The run's saves (steps kept within the saves budget), else its latest LoRA (one recovered after a reload), then the dropped files: the grid's columns. */
export function gridLoras(): LoraPick[] {
  const app = useApp.getState();
  const runName = app.lora?.runName ?? app.config.runName;
  const saves: LoraPick[] = app.saves.length
    ? app.saves.map((s) => ({ label: `step ${s.step}`, lora: { source: 'file', bytes: s.bytes, name: `${runName}-${s.step}.safetensors` } }))
    : [runLora()].filter((x): x is LoraPick => !!x);
  return [...saves, ...useTry.getState().files.map((f): LoraPick => ({ label: f.name, lora: { source: 'file', bytes: f.bytes, name: f.name } }))];
}

/** Why nothing can render now (no model, a run going on, settings to fix), or null. */
export function notReady(s: TrySettings): string | null {
  const app = useApp.getState();
  if (app.model.status !== 'ready') return 'Load a base model first.';
  if (app.run.starting || app.run.status === 'running') return 'A training run is going on: pause it (or let it finish) to render.';
  const e = Object.values(tryErrors(s, app.config.resolution));
  return e.length ? `Fix the settings first: ${e[0]}` : null;
}

/** Set by Cancel until the next render starts: a grid makes one sample call per column, and a cancel between two calls stops it too. */
let cancelRequested = false;

/** Stop the render now running: the worker stops after its current denoising step, a grid takes no further column. */
export async function cancelRender(): Promise<void> {
  if (!useTry.getState().progress) return;
  cancelRequested = true;
  await trainer().cancelSample();
}

/** One sample call: images for each strength with this LoRA, as PNGs carrying their settings; the worker's notes on the LoRA go to the panel. */
async function render(s: TrySettings, pick: LoraPick, strengths: number[], label: string): Promise<TryImage[]> {
  if (cancelRequested) throw new Error(`Cancelled before rendering ${label}`);
  const app = useApp.getState();
  const size = renderSize(s, app.config.resolution);
  const request = { prompt: s.prompt, negativePrompt: s.negativePrompt, seed: s.seed, steps: s.steps, guidance: s.guidance, sampler: s.sampler, ...size, lora: pick.lora, strengths };
  const onProgress = (p: SampleProgress) => useTry.setState({ progress: { label, ...p } });
  const { images, notes } = await trainer().sample(request, Comlink.proxy(onProgress));
  if (notes.length) useTry.setState((t) => ({ notes: [...new Set([...t.notes, ...notes.map((n) => `${pick.label}: ${n}`)])] }));
  return images.map((img) => {
    const settings: ImageSettings = { prompt: s.prompt, negativePrompt: s.negativePrompt, seed: s.seed, steps: s.steps, guidance: s.guidance, sampler: s.sampler, ...size, strength: img.strength, model: app.model.name ?? 'base model', ...(img.strength ? { lora: pick.label } : {}) };
    const png = settingsPng(img, settings);
    return { png, settings, url: URL.createObjectURL(new Blob([png as Uint8Array<ArrayBuffer>], { type: 'image/png' })) };
  });
}

/** Run `work` with the panel's progress and error handling; one render at a time. */
async function busy(work: (s: TrySettings) => Promise<void>): Promise<void> {
  const { settings, progress, set } = useTry.getState();
  if (progress) return;
  const why = notReady(settings);
  if (why) return set({ message: why });
  cancelRequested = false;
  set({ message: null, notes: [], progress: { label: 'Starting', image: 0, images: 0, step: 0, steps: settings.steps } });
  try {
    await work(settings);
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    // A cancel is what was asked for, not a failure: the worker's words ("Cancelled at step k of n") as they are.
    set({ message: /^Cancelled (at|before) /.test(text) ? `${text}.` : `Rendering failed: ${text}` });
  } finally {
    set({ progress: null });
  }
}

/** The base model and the LoRA side by side, from the same seed (one call: strengths 0 and the slider's). */
export function renderPair(): Promise<void> {
  return busy(async (s) => {
    const pick = chosenLora();
    if (!pick) throw new Error('there is no LoRA yet: train one, or drop a kohya LoRA file on this panel');
    const [base, lora] = await render(s, pick, [0, s.strength], `base and ${pick.label}`);
    revokeImages([useTry.getState().pair?.base, useTry.getState().pair?.lora]);
    useTry.setState({ pair: { base: base!, lora: lora! } });
  });
}

/** The X/Y grid: one column per LoRA (saved steps, dropped files), one row per strength; strength 0 renders once. */
export function renderGrid(): Promise<void> {
  return busy(async (s) => {
    const strengths = gridStrengths(s.gridStrengths) as number[];
    const { columns, dropped } = gridPlan(gridLoras(), strengths);
    if (!columns.length) throw new Error('there is no LoRA yet: train one, or drop kohya LoRA files on this panel');
    const cells: TryImage[][] = strengths.map(() => []);
    for (const [c, col] of columns.entries()) {
      const imgs = col.render.length ? await render(s, col, col.render, `column ${c + 1} of ${columns.length} (${col.label})`) : [];
      strengths.forEach((x, r) => (cells[r]![c] = x === 0 && c > 0 ? cells[r]![0]! : imgs[col.render.indexOf(x)]!));
    }
    const old = useTry.getState().grid;
    if (old) revokeImages([...new Set(old.images.flat())]);
    useTry.setState({ grid: { columns: columns.map((c) => c.label), strengths, images: cells }, message: dropped ? `The grid shows the last ${columns.length} LoRAs; ${dropped} earlier left out.` : null });
  });
}
