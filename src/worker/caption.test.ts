// The worker's captioning: tagger fetched from a hub stand-in once, WebGPU tried first and wasm taken when it fails (ORT's Node build has no WebGPU EP), captions set on the dataset, cancel between images, bad requests refused before any download.
import type * as Ort from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import type { TrainItem } from '../training/data.js';
import { fixtureHub, fixtureTaggerModel, fixtureTagsCsv } from '../training/tagger-fixture.js';
import type { CaptionProgress } from '../protocol/index.js';
import { CaptionService } from './caption.js';

const loadOrt = async () => {
  const specifier = 'onnxruntime-web';
  const ort = (await import(/* @vite-ignore */ specifier)) as typeof Ort;
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  return ort;
};

const solid = (name: string, rgb: [number, number, number]): TrainItem => {
  const data = new Uint8ClampedArray(24 * 16 * 4);
  for (let i = 0; i < 24 * 16; i++) data.set([...rgb, 255], i * 4);
  return { name, caption: 'old caption', image: { width: 24, height: 16, data } };
};

describe('CaptionService', () => {
  it('downloads the tagger once, falls back to wasm with the reason, and captions the chosen images', async () => {
    const hub = fixtureHub({ 'SmilingWolf/t/selected_tags.csv': fixtureTagsCsv(), 'SmilingWolf/t/model.onnx': fixtureTaggerModel({ size: 32 }) });
    const svc = new CaptionService({ ort: loadOrt, providers: [{ name: 'webgpu' }, { name: 'wasm' }], hub: hub.options });
    const items = [solid('a/blue.png', [0, 0, 255]), solid('b/red.png', [255, 0, 0]), solid('c/green.png', [0, 255, 0])];
    const tagger = { repo: 'SmilingWolf/t', endpoint: hub.endpoint };
    const seen: CaptionProgress[] = [];
    const r = await svc.caption(items, { tagger, threshold: 0.5, characterThreshold: 0.85, triggerWord: 'sks', names: ['a/blue.png', 'b/red.png'] }, (p) => seen.push(p));
    expect(r.provider).toBe('wasm');
    expect(r.note).toMatch(/WebGPU was not used \(webgpu: .+\); the tagger ran on the CPU \(wasm\)/);
    expect(r.size).toBe(32);
    expect(r.captions.map((c) => [c.name, c.caption])).toEqual([['a/blue.png', 'sks, blue sky, ^_^'], ['b/red.png', 'sks, red theme, ^_^']]);
    expect(items.map((i) => i.caption)).toEqual(['sks, blue sky, ^_^', 'sks, red theme, ^_^', 'old caption']);
    expect(seen.some((p) => /Downloading the tagger: model\.onnx/.test(p.stage))).toBe(true);
    expect(seen.filter((p) => p.total === 2).map((p) => p.done)).toEqual([0, 1, 2]);
    // The same tagger again: no request at all (the session stays open).
    hub.asked.length = 0;
    const again = await svc.caption(items, { tagger, threshold: 0.5, triggerWord: '' }, () => {});
    expect(hub.asked).toEqual([]);
    expect([again.reused, again.hub.downloadedFiles, again.hub.cachedFiles]).toEqual([true, 0, 0]);
    expect(again.captions.map((c) => c.caption)).toEqual(['blue sky, ^_^, hatsune miku', 'red theme, ^_^, hatsune miku', 'green theme, ^_^, hatsune miku']);
    // Cancelled while the first image is tagged: it stops before the second, keeps the first's new caption and leaves the others as they were.
    const partial = await svc.caption(items, { tagger, threshold: 0.5, triggerWord: 'x' }, (p) => p.stage === 'Tagging a/blue.png' && svc.cancel());
    expect(partial.cancelled).toBe('Cancelled at image 2 of 3: 1 captioned, the others keep their captions');
    expect([partial.captions.map((c) => c.name), items.map((i) => i.caption)]).toEqual([['a/blue.png'], ['x, blue sky, ^_^, hatsune miku', 'red theme, ^_^, hatsune miku', 'green theme, ^_^, hatsune miku']]);
    svc.cancel(); // nothing runs: the next request is not cancelled by it
    const whole = svc.caption(items, { tagger, threshold: 0.5, triggerWord: '' }, () => {});
    // One request at a time: a second one while the first runs is refused (the first goes on).
    await expect(svc.caption(items, { tagger, threshold: 0.5, triggerWord: '' }, () => {})).rejects.toThrow(/Captioning is already running: wait for it to finish \(or cancel it\)/);
    expect((await whole).cancelled).toBeUndefined();
    await svc.release();
  });

  it('refuses a bad threshold, an empty repository id or no images before downloading anything', async () => {
    const hub = fixtureHub({});
    const svc = new CaptionService({ ort: loadOrt, providers: [{ name: 'wasm' }], hub: hub.options });
    const items = [solid('x.png', [1, 2, 3])];
    const tagger = { repo: 'o/t', endpoint: hub.endpoint };
    await expect(svc.caption(items, { tagger, threshold: 35, triggerWord: '' }, () => {})).rejects.toThrow(/tag threshold must be a number above 0 and at most 1 \(0\.35 is usual\), not 35/);
    await expect(svc.caption(items, { tagger, threshold: 0.3, characterThreshold: 0, triggerWord: '' }, () => {})).rejects.toThrow(/character threshold must be/);
    // An emptied field reaches the worker as NaN: it is called empty, not "NaN".
    await expect(svc.caption(items, { tagger, threshold: NaN, triggerWord: '' }, () => {})).rejects.toThrow(/^The tag threshold is empty: enter a number above 0 and at most 1 \(0\.35 is usual\)$/);
    await expect(svc.caption(items, { tagger: { repo: ' ' }, threshold: 0.3, triggerWord: '' }, () => {})).rejects.toThrow(/Name the tagger repository/);
    await expect(svc.caption([], { tagger, threshold: 0.3, triggerWord: '' }, () => {})).rejects.toThrow(/no images to caption/);
    expect(hub.asked).toEqual([]);
    await expect(svc.caption(items, { tagger, threshold: 0.3, triggerWord: '' }, () => {})).rejects.toThrow(/o\/t has no selected_tags\.csv/);
  });
});
