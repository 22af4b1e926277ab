// The worker's TrainerApi in Node, on Dawn with the Node image decoder: adapter, tiny model over HTTP, dataset, bucket counts, one run and its continuation from a run state.
import { readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeGpu } from '../engine/node.js';
import { TINY_DEMO_SIZE } from '../model/tiny.js';
import { DEFAULT_CONFIG } from '../training/config.js';
import { decodeImageNode } from '../training/decode-node.js';
import { ROOT } from '../training/testing.js';
import { readRunStateSummary, type RunCallbacks, type RunState } from '../protocol/index.js';
import { bytesSource, openSafetensors } from '../model/safetensors.js';
import { createTrainerApi } from './api.js';

/** public/ over HTTP with byte ranges, as the page's server gives it. */
function serve(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const file = join(ROOT, 'public', decodeURIComponent(new URL(req.url!, 'http://x').pathname));
    if (!statSync(file, { throwIfNoEntry: false })?.isFile()) return void res.writeHead(404).end();
    const data = readFileSync(file);
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (!m) return void res.writeHead(200, { 'Content-Length': data.length }).end(req.method === 'HEAD' ? undefined : data);
    const [a, b] = [Number(m[1]), Math.min(Number(m[2]), data.length - 1)];
    res.writeHead(206, { 'Content-Range': `bytes ${a}-${b}/${data.length}`, 'Content-Length': b - a + 1 }).end(data.subarray(a, b + 1));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server })));
}

const sample = (name: string) => {
  const b = readFileSync(join(ROOT, 'public/samples', name));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer;
};

/** Run callbacks that record the run's states, saves (with their run state) and log lines. */
function recorder() {
  const states: RunState[] = [];
  const saved: number[] = [];
  const files = new Map<number, { file: Uint8Array; state?: Uint8Array }>();
  const logs: string[] = [];
  const callbacks = (ok: (r: { step: number; stopped: boolean }) => void, fail: (e: Error) => void): RunCallbacks => ({
    onState: (s) => states.push(s),
    onMetrics: () => {},
    onCheckpoint: (file, step, state) => {
      saved.push(step);
      files.set(step, { file, state });
    },
    onPreview: () => {},
    onLog: (m) => logs.push(m),
    onDone: ok,
    onError: (m) => fail(new Error(m)),
  });
  return { states, saved, files, logs, callbacks };
}

describe('TrainerApi (src/worker) on Dawn', () => {
  let server: Server | undefined;
  afterAll(() => server?.close());

  it('reports the adapter, loads the tiny model, counts buckets, trains two steps, saves, and continues from the first save’s run state', async () => {
    const http = await serve();
    server = http.server;
    const api = createTrainerApi({ acquireGpu: nodeGpu, decodeImage: async (name, bytes) => decodeImageNode(name, new Uint8Array(bytes)) });
    const adapter = await api.adapter();
    expect(adapter.software).toBe(true); // SwiftShader here
    const info = await api.loadModel({ kind: 'tiny', baseUrl: `${http.url}/tiny` }, () => {});
    expect([info.demo, info.resolutionHint, info.components.every((c) => c.done)]).toEqual([true, 64, true]);

    const report = await api.setDataset([
      { name: 'astronaut.png', bytes: sample('astronaut.png'), caption: 'an astronaut' },
      { name: 'coffee.jpg', bytes: sample('coffee.jpg'), caption: 'a cup of coffee' },
      { name: 'empty.png', bytes: new ArrayBuffer(0), caption: '' },
    ]);
    expect(report.images.map((i) => i.name)).toEqual(['astronaut.png', 'coffee.jpg']);
    expect(report.skipped.map((s) => s.name)).toEqual(['empty.png']);
    const settings = { ...DEFAULT_CONFIG, ...TINY_DEMO_SIZE };
    expect((await api.bucketCounts(settings))!.reduce((a, b) => a + b.images, 0)).toBe(2);
    expect(await api.bucketCounts({ ...settings, enableBuckets: false })).toEqual([{ width: 64, height: 64, images: 2 }]);
    expect(await api.bucketCounts({ ...settings, bucketStep: 0 })).toBeNull();

    const config = { ...settings, baseSteps: 2, saveEvery: 1, trainTextEncoder: false, sampleSteps: 0, enableBuckets: false };
    const { states, saved, files, logs, callbacks } = recorder();
    const end = new Promise<{ step: number; stopped: boolean }>((ok, fail) => void api.start(config, callbacks(ok, fail)));
    await api.unpause(); // not paused: nothing happens
    expect(await end).toEqual({ step: 2, stopped: false });
    expect(states.map((s) => s.phase).filter((p, i, a) => p !== a[i - 1])).toEqual(['caching', 'compiling', 'running', 'done']);
    // Each image counted from 0 of 2; compiling first without a count, then from 0 of the pipelines to build.
    expect(states.filter((s) => s.phase === 'caching').map((s) => `${s.done}/${s.total}`)).toEqual(['0/2', '1/2', '2/2']);
    const compiling = states.filter((s) => s.phase === 'compiling');
    expect(compiling[0]!.total).toBeUndefined();
    expect(compiling[1]).toMatchObject({ done: 0, total: expect.any(Number) });
    expect(saved).toEqual([1, 2]);
    expect((await api.saveNow())?.length).toBeGreaterThan(0);

    // Each save sent its run state; continuing from step 1's ends where the run did, with the same LoRA tensors.
    const first = files.get(1)!.state!;
    expect(await readRunStateSummary(first)).toMatchObject({ step: 1, totalSteps: 2, config: { ...config } });
    await expect(api.start({ ...config, unetLr: 2e-4 }, callbacks(() => {}, () => {}), first)).rejects.toThrow(/^The file to continue cannot continue exactly: setting unetLr: 0\.0001 → 0\.0002\. /);
    const straight = files.get(2)!.file;
    const again = new Promise<{ step: number; stopped: boolean }>((ok, fail) => void api.start(config, callbacks(ok, fail), first));
    expect(await again).toEqual({ step: 2, stopped: false });
    expect(logs[0]).toBe('Continuing the run from step 1 of 2 (its optimizer state, learning-rate schedule and random streams as they were).');
    const [a, b] = [await openSafetensors(bytesSource(straight)), await openSafetensors(bytesSource(files.get(2)!.file))];
    expect([...b.tensors.keys()]).toEqual([...a.tensors.keys()]);
    for (const k of a.tensors.keys()) expect(Buffer.from(await b.readRaw(k)).equals(Buffer.from(await a.readRaw(k))), k).toBe(true);
  }, 10 * 60_000);
});
