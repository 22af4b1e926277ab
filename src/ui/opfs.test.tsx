// In Chromium's real OPFS and Web Locks: the kept images and run saves read back as written, a save replaces the last, a finished run leaves nothing, the offer names the step; the saves list (validation curve, per-image losses) survives a reload; another tab's run lock stops start, continue and discard.
import { act } from 'react';
import { createRoot } from 'react-dom/client';
import { beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, type RunMetrics } from '../protocol/index.js';
import { folder, listFiles, writeFile } from './opfs.js';
import { deleteKeptImages, keepImages, keptImages, keptImagesSize } from './opfs-images.js';
import { forgetRun, keepSave, keptRun, keptSave, type RunIdentity } from './opfs-run.js';
import { forgetSaves, readSaves, writeSaves } from './opfs-saves.js';
import { continueKept, discardKept, noteModelLoaded, noteRunStart, noteRunState, noteSave, refreshRecovery, useRecovery } from './recovery-run.js';
import { KeptImages, RecoveryOffer } from './RecoveryPanel.js';
import { dropRunLock, OTHER_TAB, RUN_LOCK, runLockedElsewhere, takeRunLock } from './run-lock.js';
import { forgetSavesList, keepSavesList, restoreSavesList } from './saves-sync.js';
import { NO_VALIDATION, useApp } from './store.js';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const bytes = (...v: number[]) => new Uint8Array(v).buffer;
const img = (name: string, b: ArrayBuffer, caption: string, repeats?: number) => ({ name, bytes: b, caption, ...(repeats !== undefined ? { repeats } : {}) });
const id: RunIdentity = { runName: 'cat-lora', config: { ...DEFAULT_CONFIG, runName: 'cat-lora', baseSteps: 8 }, model: { kind: 'tiny' }, modelName: 'tiny demo model', demo: true };
const metric = (step: number): RunMetrics => ({ step, totalSteps: 8, epoch: 1, loss: 0.5 / step, smoothLoss: 0.5, lrUnet: 1e-4, lrTextEncoder: 0, stepsPerSec: 1, imagesPerSec: 1, elapsedMs: step, etaMs: 0, gpuBytes: 0, heldBytes: 0, peakHeldBytes: 0 });
const plain = (b: ArrayBuffer | Uint8Array) => Array.from(new Uint8Array(b));

beforeEach(async () => {
  dropRunLock();
  await forgetRun(true);
  await forgetSaves();
});

describe('the kept images', () => {
  it('read back with their paths, captions and repeats, in order', async () => {
    await keepImages([img('10_cat/1.png', bytes(1, 2, 3), 'a cat', 10), img('coffee.jpg', bytes(9, 8), 'coffee')]);
    const back = (await keptImages())!;
    expect(back.map((i) => [i.name, plain(i.bytes), i.caption, i.repeats])).toEqual([
      ['10_cat/1.png', [1, 2, 3], 'a cat', 10],
      ['coffee.jpg', [9, 8], 'coffee', undefined],
    ]);
    expect(await keptImagesSize()).toEqual({ images: 2, bytes: 5 });
  });
  it('keep the same bytes once, drop files no longer in the set, and delete entirely', async () => {
    // Two paths with the same bytes share one file; a caption change rewrites only the manifest.
    await keepImages([img('a.png', bytes(5, 5), 'x'), img('b/a.png', bytes(5, 5), 'y'), img('c.png', bytes(7), 'z')]);
    const dir = (await folder(['images']))!;
    expect((await listFiles(dir)).size).toBe(3); // two image files and the manifest
    await keepImages([img('a.png', bytes(5, 5), 'x, edited')]);
    const files = await listFiles(dir);
    expect([files.size, [...files].filter(([n]) => n !== 'images.json').map(([, size]) => size)]).toEqual([2, [2]]);
    expect((await keptImages())!.map((i) => i.caption)).toEqual(['x, edited']);
    await deleteKeptImages();
    expect(await keptImages()).toBeNull();
    expect(await keptImagesSize()).toEqual({ images: 0, bytes: 0 });
  });
  it('count as none when an image file of the set is gone', async () => {
    await keepImages([img('a.png', bytes(1), 'x')]);
    const dir = (await folder(['images']))!;
    for (const name of (await listFiles(dir)).keys()) if (name !== 'images.json') await dir.removeEntry(name);
    expect(await keptImages()).toBeNull();
  });
});

describe('the kept run', () => {
  it('holds the latest save only, with the metrics up to it', async () => {
    await keepSave(id, { step: 2, totalSteps: 8, bytes: new Uint8Array([2, 2]), kind: 'state', metrics: [metric(1), metric(2)] });
    await keepSave(id, { step: 4, totalSteps: 8, bytes: new Uint8Array([4, 4, 4]), kind: 'state', metrics: [1, 2, 3, 4, 5].map(metric) });
    const r = (await keptRun())!;
    expect([r.step, r.totalSteps, r.kind, r.runName, r.config.baseSteps, r.model]).toEqual([4, 8, 'state', 'cat-lora', 8, { kind: 'tiny' }]);
    expect(r.metrics.map((m) => m.step)).toEqual([1, 2, 3, 4]);
    expect(plain(await keptSave(r))).toEqual([4, 4, 4]);
    expect([...(await listFiles((await folder(['run']))!)).keys()].sort()).toEqual(['run.json', 'save-4.state']);
  });
  it('counts as none when its record is damaged or its save is gone', async () => {
    await keepSave(id, { step: 2, totalSteps: 8, bytes: new Uint8Array([2]), kind: 'lora', metrics: [] });
    const dir = (await folder(['run']))!;
    await dir.removeEntry('save-2.safetensors');
    expect(await keptRun()).toBeNull();
    await writeFile(dir, 'run.json', '{"step": 2, "fi');
    expect(await keptRun()).toBeNull();
  });
});

describe('a run through its life on the page', () => {
  beforeEach(() => {
    useApp.setState({ dataset: [{ name: 'a.png', url: '', bytes: bytes(1, 2), caption: 'a' }, { name: 'b.png', url: '', bytes: bytes(3), caption: 'b', repeats: 2 }], metrics: [metric(1), metric(2)], model: { status: 'ready', name: 'tiny demo model', demo: true } });
    noteModelLoaded({ kind: 'tiny', baseUrl: 'http://x/tiny/' }, 'tiny demo model');
  });
  it('keeps the images at the start, each save, and nothing once it has finished every step', async () => {
    await keepSave(id, { step: 6, totalSteps: 8, bytes: new Uint8Array([6]), kind: 'state', metrics: [] });
    await noteRunStart(id.config, false); // a fresh run replaces the kept one
    expect(await keptRun()).toBeNull();
    expect((await keptImages())!.map((i) => i.name)).toEqual(['a.png', 'b.png']);
    await noteSave(2, new Uint8Array([7]), new Uint8Array([8, 8]));
    const r = (await keptRun())!;
    expect([r.step, r.totalSteps, r.kind, plain(await keptSave(r))]).toEqual([2, 8, 'state', [8, 8]]);
    // Without a run-state file (a worker that sends none) the LoRA is kept, and says so.
    await noteSave(2, new Uint8Array([7]), undefined);
    expect((await keptRun())!.kind).toBe('lora');
    await noteRunState({ phase: 'done', since: 0, stopped: true, step: 2, savedStep: 2 });
    expect((await keptRun())!.step).toBe(2); // a stopped run can go on
    await noteRunState({ phase: 'done', since: 0, stopped: false, step: 8, savedStep: 8 });
    expect(await keptRun()).toBeNull();
    expect(await keptImages()).toBeNull();
  });
  it('offers to continue from the kept step, and Discard deletes the run and its images', async () => {
    await noteRunStart(id.config, false);
    await noteSave(2, new Uint8Array([7]), new Uint8Array([8]));
    useApp.setState({ run: { status: 'error' } });
    const el = document.body.appendChild(document.createElement('div'));
    const root = createRoot(el);
    // The panel's reads and the button's deletes queue behind one another: two reads in a row see the last one through.
    const settle = () => act(async () => (await refreshRecovery(), await refreshRecovery()));
    await act(async () => root.render(<><RecoveryOffer start={async () => {}} /><KeptImages /></>));
    await settle();
    const button = [...el.querySelectorAll('button')].find((b) => b.textContent === 'Continue the run from step 2');
    expect(button).toBeDefined();
    expect(el.textContent).toContain('saved at step 2 of 8');
    expect(el.querySelector('[data-testid=kept-images]')!.textContent).toContain('2 images of the last run (3 B)');
    await act(async () => [...el.querySelectorAll('button')].find((b) => b.textContent === 'Discard it')!.click());
    await settle();
    expect(el.textContent).not.toContain('Continue the run');
    expect(el.querySelector('[data-testid=kept-images]')).toBeNull();
    expect(await keptImages()).toBeNull();
    act(() => root.unmount());
  });
});

const loss = (name: string, mean: number) => ({ name, mean, count: 3 });
const saveFiles = async () => [...(await listFiles((await folder(['saves']))!)).keys()].sort();

describe('the kept saves list', () => {
  it('reads back as written (a non-finite loss as NaN), drops the files of saves that left the list, and skips a save whose file is gone', async () => {
    const validation = { points: [{ step: 2, loss: 0.3 }, { step: 4, loss: NaN }], best: { step: 2, loss: 0.3 }, images: { 'a.png': 0.25 } };
    await writeSaves({ runName: 'cat-lora', validation, imageLosses: { 'a.png': loss('a.png', 0.2) } }, [{ step: 2, bytes: new Uint8Array([2, 2]) }, { step: 4, bytes: new Uint8Array([4]) }]);
    const back = (await readSaves())!;
    expect(back.saves.map((x) => [x.step, plain(x.bytes)])).toEqual([[2, [2, 2]], [4, [4]]]);
    expect([back.record.runName, back.record.validation, back.record.imageLosses]).toEqual(['cat-lora', validation, { 'a.png': loss('a.png', 0.2) }]);
    await writeSaves({ runName: 'cat-lora', validation, imageLosses: {} }, [{ step: 4, bytes: new Uint8Array([4]) }, { step: 6, bytes: new Uint8Array([6]) }]);
    expect(await saveFiles()).toEqual(['save-4.safetensors', 'save-6.safetensors', 'saves.json']);
    await (await folder(['saves']))!.removeEntry('save-4.safetensors');
    expect((await readSaves())!.saves.map((x) => x.step)).toEqual([6]);
  });

  it("survives a reload with the page's validation curve and per-image losses; a continue takes them up to its step, the best among them", async () => {
    const saves = [2, 4, 6].map((step) => ({ step, bytes: new Uint8Array([step, step]) }));
    const validation = { points: [{ step: 2, loss: 0.5 }, { step: 4, loss: 0.6 }, { step: 5, loss: 0.55 }, { step: 6, loss: 0.3 }], best: { step: 6, loss: 0.3 }, images: { 'a.png': 0.4 } };
    const imageLosses = { 'a.png': loss('a.png', 0.2), 'b.png': loss('b.png', 0.9) };
    useApp.setState({ saves, validation, imageLosses, run: { status: 'done' }, lora: { bytes: new Uint8Array([6, 6]), step: 6, runName: 'cat-lora' } });
    await keepSavesList();
    // The reload: nothing in memory.
    useApp.setState({ saves: [], validation: NO_VALIDATION, imageLosses: {}, run: { status: 'idle' } });
    expect(await restoreSavesList()).toBe(true);
    const st = useApp.getState();
    expect([st.saves.map((x) => [x.step, plain(x.bytes)]), st.validation, st.imageLosses]).toEqual([saves.map((x) => [x.step, plain(x.bytes)]), validation, imageLosses]);
    // Continued from the save at step 4: the later saves and validations are made again by the run.
    expect(await restoreSavesList(4)).toBe(true);
    const c = useApp.getState();
    expect([c.saves.map((x) => x.step), c.validation.points.map((p) => p.step), c.validation.best]).toEqual([[2, 4], [2, 4], { step: 2, loss: 0.5 }]);
    // A new run's empty list empties what is kept.
    useApp.setState({ saves: [] });
    await keepSavesList();
    expect(await saveFiles()).toEqual(['saves.json']);
    expect((await readSaves())!.saves).toEqual([]);
  });
});

describe('another tab training (it holds the run lock)', () => {
  /** The lock held as another tab of the page would hold it, until `free()`. */
  async function otherTab(): Promise<() => void> {
    let free = () => {};
    await new Promise<void>((held) => void navigator.locks.request(RUN_LOCK, () => (held(), new Promise<void>((r) => (free = r)))));
    return () => free();
  }

  it('stops this tab starting, continuing or discarding, and from writing over its saves', async () => {
    await keepSave(id, { step: 2, totalSteps: 8, bytes: new Uint8Array([8]), kind: 'state', metrics: [] });
    await writeSaves({ runName: 'cat-lora', validation: NO_VALIDATION, imageLosses: {} }, [{ step: 2, bytes: new Uint8Array([7]) }]);
    useApp.setState({ run: { status: 'idle' }, saves: [], validation: NO_VALIDATION, imageLosses: {} });
    const free = await otherTab();
    expect([await takeRunLock(), await runLockedElsewhere()]).toEqual([false, true]);
    const el = document.body.appendChild(document.createElement('div'));
    const root = createRoot(el);
    await act(async () => root.render(<RecoveryOffer start={async () => {}} />));
    await act(async () => refreshRecovery());
    expect(el.querySelector('[data-testid=other-tab]')!.textContent).toContain(`${OTHER_TAB} (“cat-lora”, saved at step 2 of 8)`);
    expect(el.textContent).not.toContain('Continue the run');
    let started = false;
    await act(async () => continueKept(async () => {}, async () => void (started = true)));
    expect([started, useRecovery.getState().message]).toEqual([false, expect.stringContaining(OTHER_TAB)]);
    await discardKept();
    await keepSavesList(); // this tab's empty list
    await forgetSavesList();
    expect([(await keptRun())?.step, (await readSaves())?.saves.map((x) => x.step)]).toEqual([2, [2]]);
    // Once that tab's run has ended, this tab takes the lock, and holds it until it drops it.
    free();
    await act(async () => refreshRecovery());
    expect(el.querySelector('[data-testid=other-tab]')).toBeNull();
    expect(await takeRunLock()).toBe(true);
    expect(await navigator.locks.request(RUN_LOCK, { ifAvailable: true }, (l) => l !== null)).toBe(false);
    // Dropped, it is free again: this tab takes it at once (not refused as another tab's), and so could another tab.
    dropRunLock();
    expect(await takeRunLock()).toBe(true);
    dropRunLock();
    expect(await navigator.locks.request(RUN_LOCK, (l) => l !== null)).toBe(true);
    act(() => root.unmount());
  });
});
