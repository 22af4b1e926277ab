// One training run from settings to its end, as the worker and the CLI both run it: validate, read the LoRA to
// continue from, build the trainer, encode the latents, train. Each host only says where the events go.
import { readNetworkFile } from '../model/lycoris-file.js';
import type { Pipeline } from '../model/pipeline.js';
import { validateConfig, type TrainConfig } from './config.js';
import type { TrainItem } from './data.js';
import { RunControl, type TrainEvents } from './loop.js';
import { loraSpecs } from './network.js';
import { checkRunState } from './run-state-check.js';
import { datasetFingerprint, readRunStateFile, type RunStateContents } from './run-state-file.js';
import { Trainer } from './trainer.js';

/** Settings that did not validate: each field's message (the page's form shows them, the CLI lists them). */
export class SettingsError extends Error {
  constructor(readonly errors: Record<string, string>) {
    super(Object.entries(errors).map(([k, m]) => `${k}: ${m}`).join('; '));
    this.name = 'SettingsError';
  }
}

/** The settings, validated once at the host's boundary (throws SettingsError). */
export function checkSettings(raw: unknown): TrainConfig {
  const r = validateConfig(raw);
  if (!r.ok) throw new SettingsError(r.errors);
  return r.config;
}

/** The stages before the first step, with their counts: images encoded, then the steps' GPU pipelines compiled. */
export type SessionStage = 'caching' | 'compiling';

/** What a session tells its host. */
export interface SessionEvents extends Pick<TrainEvents, 'onMetrics' | 'onCheckpoint' | 'onPreview' | 'onValidation' | 'onImageLosses'> {
  /**
   * A stage begins (no counts yet, for compiling) or counts on: caching gives 0 of the images first,
   * compiling 0 of the pipelines still to build once it has counted them.
   */
  onProgress?(stage: SessionStage, counts?: { done: number; total: number }): void;
}

/** What a run needs: a loaded model, validated settings, the dataset, and optionally a LoRA file to go on training. */
export interface SessionSetup {
  pipeline: Pipeline;
  config: TrainConfig;
  items: TrainItem[];
  /**
   * What to continue, and what messages call it: a run-state file (a save's `state` bytes: the run goes
   * on exactly, refused when the settings or dataset changed) or an earlier run's LoRA file (same
   * targets; it keeps its own rank and alpha; the optimizer starts fresh). Told apart by the file's metadata.
   */
  continueFrom?: { file: Uint8Array; name: string };
  events?: SessionEvents;
}

/** How a run ended: the last step trained, whether a Stop ended it, the step of the last saved LoRA (0: none). */
export interface SessionEnd {
  step: number;
  stopped: boolean;
  savedStep: number;
  /** False when a Stop came during the latent encoding: nothing was trained or saved. */
  trained: boolean;
}

/** The trainer's events from the session's. */
function trainerEvents(e: SessionEvents): TrainEvents {
  return { onMetrics: e.onMetrics, onCheckpoint: e.onCheckpoint, onPreview: e.onPreview, onValidation: e.onValidation, onImageLosses: e.onImageLosses, onCompile: (done, total) => e.onProgress?.('compiling', { done, total }) };
}

/** One run: `open` it, then `run` it; `control` pauses, unpauses and stops it from outside. */
export class TrainingSession {
  /** Checked between images and between steps. */
  readonly control = new RunControl();

  private constructor(
    readonly trainer: Trainer,
    /**
     * What reading the file to continue from found: its module count, notes for the log (the first says
     * what goes on from where), and for a run-state file the step the run continues after.
     */
    readonly continued: { modules: number; notes: string[]; fromStep?: number } | null,
    private readonly events: SessionEvents,
  ) {}

  /** Read the file to continue from (if any) and build the trainer; nothing runs on the GPU yet. */
  static async open(s: SessionSetup): Promise<TrainingSession> {
    const e = s.events ?? {};
    const from = s.continueFrom;
    const state = from ? await readRunStateFile(from.file, from.name) : null;
    if (from && state) return TrainingSession.continueRun(s, state, from.name);
    const read = from ? await readNetworkFile(from.file, loraSpecs(s.pipeline, s.config), s.config.networkType, from.name) : undefined;
    const trainer = new Trainer(s.pipeline, s.config, s.items, trainerEvents(e), read?.weights);
    const fresh = `${from?.name}: a LoRA file, not a run state: its weights go on training; the optimizer, the step count and the learning-rate schedule start fresh.`;
    return new TrainingSession(trainer, read ? { modules: read.weights.size, notes: [fresh, ...read.notes] } : null, e);
  }

  /** Continue a run state exactly; refused (RunStateMismatchError) when the settings or the dataset differ from the run's. */
  private static continueRun(s: SessionSetup, state: RunStateContents, name: string): TrainingSession {
    const e = s.events ?? {};
    const notes = checkRunState(state.facts, s.config, datasetFingerprint(s.items), s.pipeline.name, name);
    const trainer = new Trainer(s.pipeline, s.config, s.items, trainerEvents(e), undefined, state);
    const { step, totalSteps } = state.facts;
    const first = step >= totalSteps ? `${name}: the run had already finished (step ${step} of ${totalSteps}); it is saved again as it is.` : `Continuing the run from step ${step} of ${totalSteps} (its optimizer state, learning-rate schedule and random streams as they were).`;
    return new TrainingSession(trainer, { modules: state.facts.modules.length, notes: [first, ...notes], fromStep: step }, e);
  }

  /** The run's arithmetic (steps, epochs, effective batch, learning rates). */
  get plan(): Trainer['plan'] {
    return this.trainer.plan;
  }

  /** Encode the latents, then train to the end or a Stop (the trainer saves at the end). */
  async run(): Promise<SessionEnd> {
    const t = this.trainer;
    // Held-out validation images are encoded after the training ones.
    this.events.onProgress?.('caching', { done: 0, total: t.items.length + (t.validation?.toEncode ?? 0) });
    const trained = await t.cacheLatents((done, total) => this.events.onProgress?.('caching', { done, total }), this.control);
    if (trained) {
      // The trainer precompiles the steps' pipelines (counted through onProgress), then runs the first step.
      this.events.onProgress?.('compiling');
      await t.run(this.control);
    }
    return { step: t.step, stopped: this.control.state === 'stopping', savedStep: t.lastSavedStep, trained };
  }

  /** Free the LoRA and the trainer's buffers. */
  dispose(): void {
    this.trainer.dispose();
  }
}
