// Page state (zustand): model, dataset, settings (persisted), run metrics and the latest LoRA.
import { create } from 'zustand';
import { persist } from 'zustand/middleware';
import { bucketSideLimits, DEFAULT_CONFIG, TINY_DEMO_PRESET } from '../protocol/index.js';
import type { ComponentProgress, DatasetReport, ImageLoss, MemoryReport, RunMetrics, RunPlan, RunState, TrainConfig } from '../protocol/index.js';
import { DEFAULT_SAVES_BUDGET_MB, type KeptSave } from './saves.js';

/** An image of the dataset on the page; its path in what was dropped (`train/10_cat/1.png`) is its name and identity. */
export interface DatasetEntry {
  name: string;
  url: string;
  bytes: ArrayBuffer;
  caption: string;
  /** Times it is drawn per epoch, from its kohya `N_` folder; absent: the Repeats setting. */
  repeats?: number;
  /** Shown under the image until its caption is edited (e.g. it came without a caption file). */
  note?: string;
  /** Marked for validation: held out of training when the validation setting is 'holdout'. */
  validation?: boolean;
}

/** The run's validation as the page shows it (validation.ts in the worker computes it). */
export interface ValidationState {
  /** Every validation loss so far, in step order. */
  points: { step: number; loss: number }[];
  /** The lowest so far: its save is kept and downloadable. */
  best: { step: number; loss: number } | null;
  /** The images validated on, with each one's loss at the last validation. */
  images: Record<string, number>;
}

export const NO_VALIDATION: ValidationState = { points: [], best: null, images: {} };

export interface AppState {
  gpu: { status: 'checking' } | { status: 'ok'; description: string; software?: boolean } | { status: 'missing'; message: string };
  model: {
    status: 'none' | 'loading' | 'ready' | 'error';
    name?: string;
    message?: string;
    progress?: number;
    /** U-Net, text encoder and VAE as they load (kept after the load as a summary). */
    components?: ComponentProgress[];
    /** How the model was read (EMA skipped, assumed values, fp16 variants), for a ready model. */
    notes?: string[];
    /** A command or steps that fix the error, shown as code. */
    help?: string;
    /** A choice the error leaves to the person (e.g. download although storage is short). */
    retry?: { label: string; run(): void };
    /** The bundled demo model (random weights), for a ready model. */
    demo?: boolean;
    /** A ready model after a later load failed: why that load failed (this model stays loaded). */
    failed?: string;
  };
  dataset: DatasetEntry[];
  report: DatasetReport | null;
  nonImages: { name: string; reason: string }[];
  config: TrainConfig;
  errors: Record<string, string>;
  /** What the settings make of the run (steps, epochs, scaled LRs), from the worker; null while they are invalid. */
  runPlan: RunPlan | null;
  memory: MemoryReport | null;
  run: {
    /** Coarse status, derived from the worker's phase (`runStatus`). */
    status: 'idle' | 'running' | 'paused' | 'done' | 'error';
    /** The run as the worker last reported it; absent before the first run. */
    state?: RunState;
    /** Start was pressed and the worker has not reported the run yet (the button is off meanwhile). */
    starting?: boolean;
    /** A message of the page's own (a refused start, a storage warning); the next action clears it. */
    message?: string;
  };
  metrics: RunMetrics[];
  /** The run's log lines from the worker (RunLog.tsx keeps the last RUN_LOG_LINES), oldest first; a new run starts it empty. */
  log: string[];
  /** Every LoRA this run saved that fits `savesBudgetMB` (saves.ts: the last and the best always stay), in step order; kept in OPFS with the validation and per-image losses (saves-sync.ts). */
  saves: KeptSave[];
  /** The budget for `saves` [MB], a setting that survives a reload. */
  savesBudgetMB: number;
  /** The run's validation losses and best step (empty when validation is off). */
  validation: ValidationState;
  /** Each image's training loss so far this run (mean over its samples), by image name. */
  imageLosses: Record<string, ImageLoss>;
  /** The latest saved LoRA; `recovered` when it comes from an earlier session's browser storage. */
  lora: { bytes: Uint8Array; step: number; runName: string; recovered?: boolean; demo?: boolean } | null;
  /** The latest preview image the worker rendered with the LoRA so far (a PNG object URL); not a training image. */
  preview: { url: string; step: number; prompt: string } | null;
  /** Resolution and bucket sides a person chose, per model name: reloading that model keeps them. */
  sizeChoices: Record<string, SizeChoice>;
  set(p: Partial<AppState>): void;
  setConfig(p: Partial<TrainConfig>): void;
}

/** The page's coarse status for a phase the worker reported. */
export function runStatus(s: RunState): AppState['run']['status'] {
  if (s.phase === 'paused') return 'paused';
  if (s.phase === 'done') return 'done';
  if (s.phase === 'failed') return 'error';
  return s.phase === 'idle' ? 'idle' : 'running';
}

/** Whether a run is going on in the worker (or being started): model loads and a second start are off then. */
export function runActive(run: AppState['run']): boolean {
  return !!run.starting || run.status === 'running' || run.status === 'paused';
}

export type SizeChoice = Pick<TrainConfig, 'resolution' | 'minBucket' | 'maxBucket'>;
export const SIZE_KEYS: readonly (keyof SizeChoice)[] = ['resolution', 'minBucket', 'maxBucket'];

/** Remember the current resolution and bucket sides as the person's choice for the loaded model. */
export function rememberSizeChoice(): void {
  const { model, config, sizeChoices } = useApp.getState();
  if (model.status !== 'ready' || !model.name) return;
  const rest = Object.entries(sizeChoices).filter(([k]) => k !== model.name).slice(-19);
  useApp.setState({ sizeChoices: { ...Object.fromEntries(rest), [model.name]: { resolution: config.resolution, minBucket: config.minBucket, maxBucket: config.maxBucket } } });
}

/**
 * A change the person made on the page (a field, a preset, a suggested fix). Bucket sides are not on
 * the form, so a new resolution brings the sides the recipe derives from it (320/768 at 512); a size
 * chosen while a model is loaded is remembered for that model.
 */
export function chooseConfig(p: Partial<TrainConfig>): void {
  const { config, setConfig } = useApp.getState();
  const r = p.resolution;
  const sides = r !== undefined && Number.isInteger(r) && r >= 64 && !('minBucket' in p) && !('maxBucket' in p) ? bucketSideLimits(r, config.maxAspect || 2, config.bucketStep || 64) : null;
  setConfig(sides ? { ...p, minBucket: sides.min, maxBucket: sides.max } : p);
  if (SIZE_KEYS.some((k) => k in p)) rememberSizeChoice();
}

/**
 * Settings for a model that just loaded: the person's own choice for this model if they made one,
 * else the model's native size (512 for SD 1.x, 64 for the tiny demo) with bucket sides derived from
 * it. Returns what was done, in words, or null when nothing changed.
 */
export function applyModelSize(name: string, nativeResolution: number): string | null {
  const { config, sizeChoices, setConfig } = useApp.getState();
  const own = sizeChoices[name];
  const want: SizeChoice = own ?? { resolution: nativeResolution, ...(({ min, max }) => ({ minBucket: min, maxBucket: max }))(bucketSideLimits(nativeResolution, config.maxAspect || 2, config.bucketStep || 64)) };
  if (SIZE_KEYS.every((k) => config[k] === want[k])) return null;
  setConfig(want);
  return own ? `resolution ${want.resolution} as you last set it for this model` : `resolution set to ${want.resolution}, this model's native size`;
}

export const useApp = create<AppState>()(
  persist(
    (set) => ({
      gpu: { status: 'checking' },
      model: { status: 'none' },
      dataset: [],
      report: null,
      nonImages: [],
      // Ready for the tiny demo, the model a first visit can load without a download.
      config: { ...DEFAULT_CONFIG, ...TINY_DEMO_PRESET },
      errors: {},
      runPlan: null,
      memory: null,
      run: { status: 'idle' },
      metrics: [],
      log: [],
      lora: null,
      saves: [],
      savesBudgetMB: DEFAULT_SAVES_BUDGET_MB,
      validation: NO_VALIDATION,
      imageLosses: {},
      preview: null,
      sizeChoices: {},
      set: (p) => set(p),
      setConfig: (p) => set((s) => ({ config: { ...s.config, ...p } })),
    }),
    // Settings survive a reload; images and runs stay in memory only.
    // Fields added since the settings were saved take their defaults.
    {
      name: 'lorasmith-settings',
      partialize: (s) => ({ config: s.config, sizeChoices: s.sizeChoices, savesBudgetMB: s.savesBudgetMB }),
      merge: (saved, current) => {
        const s = saved as { config?: Partial<TrainConfig>; sizeChoices?: Record<string, SizeChoice>; savesBudgetMB?: number } | undefined;
        return { ...current, config: { ...current.config, ...(s?.config ?? {}) }, sizeChoices: s?.sizeChoices ?? {}, savesBudgetMB: s?.savesBudgetMB ?? current.savesBudgetMB };
      },
    },
  ),
);
