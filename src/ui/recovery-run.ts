// A run kept for recovery through its life: images kept when it starts, its state with every save, forgotten when it finishes; and the one-click continue.
import { create } from 'zustand';
import type { DatasetReport, ModelSource, RunMetrics, RunState, TrainConfig } from '../protocol/index.js';
import { why } from './opfs.js';
import { keepImages, keptImages, keptImagesSize, type KeptImage } from './opfs-images.js';
import { forgetRun, keepSave, keptRun, keptSave, serial, unfinished, type KeptRun, type ModelRef, type RunIdentity } from './opfs-run.js';
import { dropRunLock, OTHER_TAB, runLockedElsewhere, takeRunLock } from './run-lock.js';
import { restoreSavesList } from './saves-sync.js';
import { runActive, useApp, type DatasetEntry } from './store.js';
import { trainer } from './worker.js';

/** What the page knows of the kept run and images (read from OPFS at load and after each change). */
export interface RecoveryState {
  run: KeptRun | null;
  images: { images: number; bytes: number };
  /** The loaded model's source, to find it again (a dropped file's File stays in memory for this session). */
  loaded: { ref: ModelRef; source: ModelSource; name: string } | null;
  /** Continue was pressed and the run has not started yet. */
  busy: boolean;
  /** Another tab of the page holds the run lock: its run is active, so this tab may not start, continue or discard one. */
  otherTab: boolean;
  /** Why something could not be kept or continued, in words. */
  message?: string;
}

export const useRecovery = create<RecoveryState>()(() => ({ run: null, images: { images: 0, bytes: 0 }, loaded: null, busy: false, otherTab: false }));

/** The run whose saves are being kept (set when it starts). */
let current: RunIdentity | null = null;

/** Read what OPFS holds into the page (after the writes already asked for). */
export function refreshRecovery(): Promise<void> {
  return serial(async () => {
    const [run, images, otherTab] = await Promise.all([keptRun().catch(() => null), keptImagesSize().catch(() => ({ images: 0, bytes: 0 })), runLockedElsewhere()]);
    useRecovery.setState({ run, images, otherTab });
  });
}

/** The ModelRef of a source (a File by its name and size), for finding the model again. */
export function modelRef(s: ModelSource): ModelRef {
  if (s.kind === 'tiny') return { kind: 'tiny' };
  if (s.kind === 'hub') return { kind: 'hub', repo: s.repo, ...(s.endpoint ? { endpoint: s.endpoint } : {}), ...(s.revision ? { revision: s.revision } : {}) };
  return { kind: 'file', name: s.file.name, size: s.file.size };
}

const sameRef = (a: ModelRef, b: ModelRef) => JSON.stringify(a) === JSON.stringify(b);

/** A model finished loading (called by the model panel): remember where it came from. */
export function noteModelLoaded(source: ModelSource, name: string): void {
  useRecovery.setState({ loaded: { ref: modelRef(source), source, name } });
}

const warn = (message: string) => useRecovery.setState({ message });

/**
 * A run is about to start with `config` on the page's dataset and model. A fresh run replaces the
 * kept one and keeps its images; a continued one goes on with the kept run's record. Failures
 * (no OPFS, storage full) are reported: the run goes on, but could not be continued after a crash.
 */
export async function noteRunStart(config: TrainConfig, continued: boolean): Promise<void> {
  const { model, dataset } = useApp.getState();
  const loaded = useRecovery.getState().loaded;
  current = loaded ? { runName: config.runName, config, model: loaded.ref, modelName: model.name ?? loaded.name, ...(model.demo ? { demo: true } : {}) } : null;
  useRecovery.setState({ message: undefined });
  if (continued) return;
  try {
    await forgetRun(false);
    await keepImages(dataset.map((d) => ({ name: d.name, bytes: d.bytes, caption: d.caption, ...(d.repeats !== undefined ? { repeats: d.repeats } : {}) })));
  } catch (e) {
    current = null;
    warn(`The images could not be kept in this browser's storage (${why(e)}): this run cannot be continued after a crash or reload.`);
  }
  await refreshRecovery();
}

/** A save of the running run: keep it (a run-state file when the worker sent one, else the LoRA). */
export async function noteSave(step: number, lora: Uint8Array, state: Uint8Array | undefined): Promise<void> {
  if (!current) return;
  const { metrics, runPlan } = useApp.getState();
  const totalSteps = metrics.at(-1)?.totalSteps ?? runPlan?.steps ?? step;
  try {
    await keepSave(current, { step, totalSteps, bytes: state ?? lora, kind: state ? 'state' : 'lora', metrics: metrics as RunMetrics[] });
  } catch (e) {
    warn(`The save of step ${step} could not be kept in this browser's storage (${why(e)}): after a crash the run continues from an earlier save, if any.`);
  }
  await refreshRecovery();
}

/** The run reported a state: once it ended the other tabs may run again; once it has finished every step, nothing is left to continue (its images go too). */
export async function noteRunState(s: RunState): Promise<void> {
  if (s.phase !== 'done' && s.phase !== 'failed') return;
  dropRunLock();
  if (s.phase === 'done' && !s.stopped && current) {
    current = null;
    await forgetRun(true).catch(() => {});
  }
  await refreshRecovery();
}

/** Forget the kept run and its images (the person's choice). */
export async function discardKept(): Promise<void> {
  if (await runLockedElsewhere()) return warn(`${OTHER_TAB}: what it keeps can be discarded there, not from this tab.`);
  await forgetRun(true).catch((e: unknown) => warn(`Could not delete what is kept: ${why(e)}`));
  await refreshRecovery();
}

/** The kept images as the page's dataset, decoded by the worker again. */
async function restoreDataset(images: KeptImage[]): Promise<DatasetReport> {
  for (const d of useApp.getState().dataset) URL.revokeObjectURL(d.url);
  const entries: DatasetEntry[] = images.map((i) => ({ ...i, url: URL.createObjectURL(new Blob([i.bytes])) }));
  const report = await trainer().setDataset(entries.map((e) => ({ name: e.name, bytes: e.bytes.slice(0), caption: e.caption, ...(e.repeats !== undefined ? { repeats: e.repeats } : {}) })));
  useApp.getState().set({ dataset: entries, report, nonImages: report.skipped });
  return report;
}

/** The source to load the kept run's model from, or why the person must load it (a dropped file from an earlier session). */
function sourceFor(r: KeptRun): ModelSource | string {
  const m = r.model;
  if (m.kind === 'tiny') return { kind: 'tiny', baseUrl: new URL('tiny/', document.baseURI).href };
  if (m.kind === 'hub') return { kind: 'hub', repo: m.repo, ...(m.endpoint ? { endpoint: m.endpoint } : {}), ...(m.revision ? { revision: m.revision } : {}) };
  const loaded = useRecovery.getState().loaded;
  if (loaded && sameRef(loaded.ref, m)) return loaded.source;
  return `Load ${m.name} again (the checkpoint file this run trained on), then press Continue: a dropped file cannot be reopened by the page on its own.`;
}

/** The run's model loaded in the worker: kept when it is (and the last run did not fail: the GPU may have been lost), else loaded with `load`. */
async function ensureModel(r: KeptRun, load: (s: ModelSource) => Promise<void>): Promise<void> {
  const { model, run } = useApp.getState();
  const loaded = useRecovery.getState().loaded;
  if (model.status === 'ready' && loaded && sameRef(loaded.ref, r.model) && run.status !== 'error') return;
  const source = sourceFor(r);
  if (typeof source === 'string') throw new Error(source);
  await load(source);
  const after = useApp.getState().model;
  if (after.status !== 'ready' || !useRecovery.getState().loaded || !sameRef(useRecovery.getState().loaded!.ref, r.model))
    throw new Error(`the model of run “${r.runName}” (${r.modelName}) did not load${after.message ? `: ${after.message}` : ''}`);
}

/**
 * "Continue the run from step N": the run's model, images and settings back on the page, then a
 * start from its latest save. `load` loads a model as the model panel does; `start` starts a run
 * from the given bytes with the metrics so far.
 */
export async function continueKept(load: (s: ModelSource) => Promise<void>, start: (from: Uint8Array, metrics: RunMetrics[]) => Promise<void>): Promise<void> {
  if (runActive(useApp.getState().run) || useRecovery.getState().busy) return;
  useRecovery.setState({ busy: true, message: undefined });
  try {
    // Held from here, so that no other tab starts between this tab's checks and its start.
    if (!(await takeRunLock())) throw new Error(`${OTHER_TAB}, on what is kept here: continue it there, or once it ends`);
    const r = await keptRun();
    if (!r) throw new Error('no run is kept in this browser any more');
    const images = await keptImages();
    if (!images) throw new Error(`the images of run “${r.runName}” are no longer kept in this browser: drop them again and start a new run`);
    const bytes = await keptSave(r);
    await ensureModel(r, load);
    await restoreDataset(images);
    await restoreSavesList(r.step);
    useApp.getState().set({ config: r.config });
    await start(bytes, r.metrics);
  } catch (e) {
    if (!runActive(useApp.getState().run)) dropRunLock();
    warn(`The run could not be continued: ${why(e)}`);
    await refreshRecovery();
  } finally {
    useRecovery.setState({ busy: false });
  }
}

export { unfinished };
