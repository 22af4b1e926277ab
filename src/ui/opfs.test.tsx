// In Chromium's real OPFS: the kept images and run saves read back as written, a save replaces the last, a finished run leaves nothing, and the offer names the step.
import { act } from 'react';
import { createRoot } from 'react-dom/client';
import { beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, type RunMetrics } from '../protocol/index.js';
import { folder, listFiles, writeFile } from './opfs.js';
import { deleteKeptImages, keepImages, keptImages, keptImagesSize } from './opfs-images.js';
import { forgetRun, keepSave, keptRun, keptSave, type RunIdentity } from './opfs-run.js';
import { noteModelLoaded, noteRunStart, noteRunState, noteSave, refreshRecovery } from './recovery-run.js';
import { KeptImages, RecoveryOffer } from './RecoveryPanel.js';
import { useApp } from './store.js';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const bytes = (...v: number[]) => new Uint8Array(v).buffer;
const img = (name: string, b: ArrayBuffer, caption: string, repeats?: number) => ({ name, bytes: b, caption, ...(repeats !== undefined ? { repeats } : {}) });
const id: RunIdentity = { runName: 'cat-lora', config: { ...DEFAULT_CONFIG, runName: 'cat-lora', baseSteps: 8 }, model: { kind: 'tiny' }, modelName: 'tiny demo model', demo: true };
const metric = (step: number): RunMetrics => ({ step, totalSteps: 8, epoch: 1, loss: 0.5 / step, smoothLoss: 0.5, lrUnet: 1e-4, lrTextEncoder: 0, stepsPerSec: 1, imagesPerSec: 1, elapsedMs: step, etaMs: 0, gpuBytes: 0, heldBytes: 0, peakHeldBytes: 0 });
const plain = (b: ArrayBuffer | Uint8Array) => Array.from(new Uint8Array(b));

beforeEach(async () => {
  await forgetRun(true);
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
