// The worker's TrainerApi in Node, on Dawn with the Node image decoder: adapter, tiny model over HTTP, dataset, bucket counts, one run.
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
import type { RunState } from '../protocol/index.js';
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

describe('TrainerApi (src/worker) on Dawn', () => {
  let server: Server | undefined;
  afterAll(() => server?.close());

  it('reports the adapter, loads the tiny model, counts buckets, trains one step and saves', async () => {
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

    const config = { ...settings, baseSteps: 1, trainTextEncoder: false, sampleSteps: 0, enableBuckets: false };
    const states: RunState[] = [];
    const saved: number[] = [];
    const end = new Promise<{ step: number; stopped: boolean }>((ok, fail) =>
      void api.start(config, {
        onState: (s) => states.push(s),
        onMetrics: () => {},
        onCheckpoint: (_f, step) => saved.push(step),
        onPreview: () => {},
        onLog: () => {},
        onDone: ok,
        onError: (m) => fail(new Error(m)),
      }),
    );
    await api.unpause(); // not paused: nothing happens
    expect(await end).toEqual({ step: 1, stopped: false });
    expect(states.map((s) => s.phase).filter((p, i, a) => p !== a[i - 1])).toEqual(['caching', 'compiling', 'running', 'done']);
    // Each image counted from 0 of 2; compiling first without a count, then from 0 of the pipelines to build.
    expect(states.filter((s) => s.phase === 'caching').map((s) => `${s.done}/${s.total}`)).toEqual(['0/2', '1/2', '2/2']);
    const compiling = states.filter((s) => s.phase === 'compiling');
    expect(compiling[0]!.total).toBeUndefined();
    expect(compiling[1]).toMatchObject({ done: 0, total: expect.any(Number) });
    expect(saved).toEqual([1]);
    expect((await api.saveNow())?.length).toBeGreaterThan(0);
  }, 10 * 60_000);
});
