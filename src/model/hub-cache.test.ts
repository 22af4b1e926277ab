// openHubRepo over an in-memory stand-in for the hub: download once then cache, listing, missing files, offline, interrupted and short downloads, range reads, fp16 variants.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../engine/backend.js';
import { loadDiffusers } from './pipeline.js';
import { HF_ENDPOINT, hubCacheContents, hubFileUrl, HubError, openHubRepo, type CacheLike } from './hub-cache.js';

const EP = 'http://hub.test';

/** Cache Storage as the spec describes it: put consumes the body and stores nothing if the body errors. */
function memoryCache() {
  const entries = new Map<string, { blob: Blob; headers: Headers }>();
  const cache: CacheLike = {
    match: async (req) => {
      const e = entries.get(String(req));
      return e ? new Response(e.blob, { headers: e.headers }) : undefined;
    },
    put: async (req, res) => {
      const blob = await res.blob();
      entries.set(String(req), { blob, headers: res.headers });
    },
    delete: async (req) => entries.delete(String(req)),
  };
  const listing = {
    keys: async () => [...entries.keys()].map((u) => new Request(u)),
    match: cache.match,
  } as unknown as Pick<Cache, 'keys' | 'match'>;
  return { cache, entries, listing };
}

type Mode = 'ok' | 'error-midway' | 'short';

/** A hub answering `/<repo>/resolve/main/<path>`, with Range, counting requests; `mode` breaks one file. */
function fakeHub(files: Record<string, Uint8Array | string>, mode: Record<string, Mode> = {}) {
  const log: string[] = [];
  let offline = false;
  const fetchImpl = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    if (offline) throw new TypeError('Failed to fetch');
    log.push(init?.method === 'HEAD' ? `HEAD ${url}` : url);
    const m = /^http:\/\/hub\.test\/(.+?\/.+?)\/resolve\/main\/(.+)$/.exec(url);
    const raw = m ? files[`${m[1]}/${m[2]}`] : undefined;
    if (raw === undefined) return new Response('Entry not found', { status: 404 });
    const body: Uint8Array<ArrayBuffer> = typeof raw === 'string' ? new TextEncoder().encode(raw) : new Uint8Array(raw);
    const range = new Headers(init?.headers).get('range');
    if (range) {
      const [, a, b] = /bytes=(\d+)-(\d+)/.exec(range)!;
      const part = body.subarray(Number(a), Number(b) + 1);
      return new Response(part, { status: 206, headers: { 'content-range': `bytes ${a}-${b}/${body.length}`, 'content-length': String(part.length) } });
    }
    const how = mode[`${m![1]}/${m![2]}`] ?? 'ok';
    const half = body.subarray(0, body.length >> 1);
    const stream = new ReadableStream<Uint8Array>({
      start(ctl) {
        if (how === 'ok') ctl.enqueue(body);
        else ctl.enqueue(half.slice());
        if (how === 'error-midway') ctl.error(new TypeError('network error'));
        else ctl.close();
      },
    });
    return new Response(stream, { status: 200, headers: { 'content-length': String(body.length) } });
  }) as typeof fetch;
  return { fetchImpl, log, setOffline: (v: boolean) => (offline = v) };
}

const weights = Uint8Array.from({ length: 1000 }, (_, i) => i % 251);
const repoFiles = { 'o/r/unet/config.json': '{"a":1}', 'o/r/unet/w.safetensors': weights };

describe('openHubRepo', () => {
  it('downloads once with progress, then serves every file from the cache without a request', async () => {
    const { cache, entries } = memoryCache();
    const hub = fakeHub(repoFiles);
    const progress: number[] = [];
    const r1 = await openHubRepo({ repo: 'o/r', endpoint: EP }, { cache, fetchImpl: hub.fetchImpl, onProgress: (p) => progress.push(p.loadedBytes), freeBytes: async () => null });
    expect(await r1.text('unet/config.json')).toBe('{"a":1}');
    const src = await r1.open('unet/w.safetensors');
    expect(src.size).toBe(1000);
    expect([...(await src.read(250, 4))]).toEqual([250, 0, 1, 2]);
    expect(r1.report()).toEqual({ cachedFiles: 0, downloadedFiles: 2, downloadedBytes: 1007, uncachedFiles: 0 });
    expect(progress.at(-1)).toBe(1000);
    expect(hub.log).toHaveLength(2);
    expect([...entries.keys()]).toEqual([`${EP}/o/r/resolve/main/unet/config.json`, `${EP}/o/r/resolve/main/unet/w.safetensors`]);

    hub.setOffline(true);
    const r2 = await openHubRepo({ repo: 'o/r', endpoint: EP }, { cache, fetchImpl: hub.fetchImpl });
    expect(await r2.text('unet/config.json')).toBe('{"a":1}');
    expect([...(await (await r2.open('unet/w.safetensors')).read(996, 4))]).toEqual([243, 244, 245, 246]);
    expect(r2.report()).toEqual({ cachedFiles: 2, downloadedFiles: 0, downloadedBytes: 0, uncachedFiles: 0 });
    expect(hub.log).toHaveLength(2);
  });

  it('lists what is cached per repository, endpoint and revision, with sizes', async () => {
    const { cache, listing } = memoryCache();
    const hub = fakeHub({ ...repoFiles, 'o/s/unet/w.safetensors': weights.subarray(0, 100) });
    const r = await openHubRepo({ repo: 'o/r', endpoint: EP }, { cache, fetchImpl: hub.fetchImpl, freeBytes: async () => null });
    await r.text('unet/config.json');
    await r.open('unet/w.safetensors');
    await (await openHubRepo({ repo: 'o/s', endpoint: EP }, { cache, fetchImpl: hub.fetchImpl, freeBytes: async () => null })).open('unet/w.safetensors');
    expect(await hubCacheContents(listing)).toEqual([
      { repo: 'o/r', endpoint: EP, revision: 'main', files: 2, bytes: 1007 },
      { repo: 'o/s', endpoint: EP, revision: 'main', files: 1, bytes: 100 },
    ]);
  });

  it('a missing file names the repository, the file and what to check, and caches nothing', async () => {
    const { cache, entries } = memoryCache();
    const r = await openHubRepo({ repo: 'o/nope', endpoint: EP }, { cache, fetchImpl: fakeHub(repoFiles).fetchImpl });
    const err = await r.text('unet/config.json').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as HubError).code).toBe('not-found');
    expect((err as Error).message).toMatch(/^o\/nope: unet\/config\.json was not found on http:\/\/hub\.test \(HTTP 404\)\. Check the repository id/);
    expect(entries.size).toBe(0);
  });

  it('offline with nothing cached says so', async () => {
    const hub = fakeHub(repoFiles);
    hub.setOffline(true);
    const r = await openHubRepo({ repo: 'o/r', endpoint: EP }, { cache: memoryCache().cache, fetchImpl: hub.fetchImpl });
    await expect(r.open('unet/w.safetensors')).rejects.toThrow(/^o\/r: could not download unet\/w\.safetensors from http:\/\/hub\.test \(Failed to fetch\), and it is not in the browser cache/);
  });

  for (const mode of ['error-midway', 'short'] as const) {
    it(`an interrupted download (${mode}) leaves no cache entry and the next load downloads again`, async () => {
      const { cache, entries } = memoryCache();
      const broken = fakeHub(repoFiles, { 'o/r/unet/w.safetensors': mode });
      const r1 = await openHubRepo({ repo: 'o/r', endpoint: EP }, { cache, fetchImpl: broken.fetchImpl, freeBytes: async () => null });
      const err = await r1.open('unet/w.safetensors').catch((e: unknown) => e);
      expect((err as HubError).code).toBe('interrupted');
      expect((err as Error).message).toMatch(/^o\/r: the download of unet\/w\.safetensors from http:\/\/hub\.test stopped after 0\.0 MiB of 0\.0 MiB .*nothing was cached/);
      expect(entries.size).toBe(0);
      const r2 = await openHubRepo({ repo: 'o/r', endpoint: EP }, { cache, fetchImpl: fakeHub(repoFiles).fetchImpl });
      expect((await r2.open('unet/w.safetensors')).size).toBe(1000);
      expect(r2.report().downloadedFiles).toBe(1);
    });
  }

  it('a cache entry shorter than the server announced is dropped and downloaded again', async () => {
    const { cache, entries } = memoryCache();
    const url = `${EP}/o/r/resolve/main/unet/w.safetensors`;
    entries.set(url, { blob: new Blob([weights.subarray(0, 10)]), headers: new Headers({ 'x-lorasmith-content-length': '1000' }) });
    const hub = fakeHub(repoFiles);
    const r = await openHubRepo({ repo: 'o/r', endpoint: EP }, { cache, fetchImpl: hub.fetchImpl, freeBytes: async () => null });
    expect((await r.open('unet/w.safetensors')).size).toBe(1000);
    expect(r.report()).toMatchObject({ cachedFiles: 0, downloadedFiles: 1 });
    expect(entries.get(url)!.blob.size).toBe(1000);
  });

  it('a file larger than the storage left is read by range requests, uncached, and the report says why', async () => {
    const { cache, entries } = memoryCache();
    const hub = fakeHub(repoFiles);
    const r = await openHubRepo({ repo: 'o/r', endpoint: EP }, { cache, fetchImpl: hub.fetchImpl, freeBytes: async () => 500 });
    const src = await r.open('unet/w.safetensors');
    expect([...(await src.read(500, 2))]).toEqual([500 % 251, 501 % 251]);
    expect(r.report()).toMatchObject({ uncachedFiles: 1, downloadedFiles: 0 });
    expect(r.report().note).toMatch(/unet\/w\.safetensors needs 0\.0 MiB but the browser lets this site store only 0\.0 MiB more/);
    expect(entries.size).toBe(0);
  });

  it('without a cache, text is fetched and weights are read by range', async () => {
    const hub = fakeHub(repoFiles);
    const r = await openHubRepo({ repo: 'o/r', endpoint: EP }, { cache: null, fetchImpl: hub.fetchImpl });
    expect(await r.text('unet/config.json')).toBe('{"a":1}');
    expect((await r.open('unet/w.safetensors')).size).toBe(1000);
    expect(r.report()).toEqual({ cachedFiles: 0, downloadedFiles: 0, downloadedBytes: 0, uncachedFiles: 2, note: 'caching is off' });
  });

  it('file URLs follow the hub layout; bad endpoints and repo ids are refused up front', async () => {
    expect(hubFileUrl({ repo: 'o/r' }, 'vae/config.json')).toBe(`${HF_ENDPOINT}/o/r/resolve/main/vae/config.json`);
    expect(hubFileUrl({ repo: 'o/r', endpoint: 'https://mirror.test/', revision: 'refs/pr/1' }, 'a.json')).toBe('https://mirror.test/o/r/resolve/refs%2Fpr%2F1/a.json');
    await expect(openHubRepo({ repo: 'o/r', endpoint: 'huggingface' }, { cache: null })).rejects.toThrow(/Hub endpoint "huggingface" is not a URL/);
    await expect(openHubRepo({ repo: 'o/r', endpoint: 'ftp://x' }, { cache: null })).rejects.toThrow(/must start with https:\/\//);
    await expect(openHubRepo({ repo: 'o r', endpoint: EP }, { cache: null })).rejects.toThrow(/is not a Hugging Face repository id/);
  });
});

/** Every file of the bundled tiny repository under `o/t/`, plus the given fp16 variants (copies of the fp32 files). */
function tinyRepo(fp16: string[]): Record<string, Uint8Array> {
  const dir = resolve(__dirname, '../../public/tiny');
  const out: Record<string, Uint8Array> = {};
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else out[`o/t/${relative(dir, p)}`] = new Uint8Array(readFileSync(p));
    }
  };
  walk(dir);
  for (const v of fp16) out[`o/t/${v}`] = out[`o/t/${v.replace('.fp16.', '.')}`]!;
  return out;
}

describe('diffusers weight variants from the hub', () => {
  const UNET16 = 'unet/diffusion_pytorch_model.fp16.safetensors', TE16 = 'text_encoder/model.fp16.safetensors', VAE16 = 'vae/diffusion_pytorch_model.fp16.safetensors';
  const url = (p: string) => `${EP}/o/t/resolve/main/${p}`;

  it('takes the fp16 files a repository has, asks about a missing one with one HEAD (remembered), and never downloads the fp32 file it replaces', async () => {
    const { cache, listing } = memoryCache();
    const hub = fakeHub(tinyRepo([UNET16, TE16]));
    const p = await loadDiffusers(new MetaBackend(), await openHubRepo({ repo: 'o/t', endpoint: EP }, { cache, fetchImpl: hub.fetchImpl, freeBytes: async () => null }));
    expect(p.files).toEqual([`o/t/${UNET16}`, `o/t/${TE16}`, 'o/t/vae/diffusion_pytorch_model.safetensors']);
    const weightRequests = hub.log.filter((l) => l.includes('safetensors'));
    expect(weightRequests).toEqual([`HEAD ${url(UNET16)}`, `HEAD ${url(TE16)}`, `HEAD ${url(VAE16)}`, url(UNET16), url(TE16), url('vae/diffusion_pytorch_model.safetensors')]);
    // The remembered absence is not a file the page lists.
    expect((await hubCacheContents(listing))[0]).toMatchObject({ repo: 'o/t', files: 8 });

    // Loading again asks nothing: the chosen files are cached and the missing variant is remembered.
    const before = hub.log.length;
    const again = await openHubRepo({ repo: 'o/t', endpoint: EP }, { cache, fetchImpl: hub.fetchImpl });
    expect((await loadDiffusers(new MetaBackend(), again)).files).toEqual(p.files);
    expect(hub.log.length).toBe(before);
    expect(again.report()).toMatchObject({ cachedFiles: 8, downloadedFiles: 0 });
  });

  it('f32 storage prefers the full-precision files; a repository without variants costs one HEAD per component', async () => {
    const hub = fakeHub(tinyRepo([UNET16]));
    const p = await loadDiffusers(new MetaBackend(), await openHubRepo({ repo: 'o/t', endpoint: EP }, { cache: memoryCache().cache, fetchImpl: hub.fetchImpl, freeBytes: async () => null }), { weightDtype: 'f32' });
    expect(p.files).toEqual(['o/t/unet/diffusion_pytorch_model.safetensors', 'o/t/text_encoder/model.safetensors', 'o/t/vae/diffusion_pytorch_model.safetensors']);
    expect(hub.log.filter((l) => l.includes(UNET16))).toEqual([]);
    expect(hub.log.filter((l) => l.startsWith('HEAD'))).toHaveLength(3);
  });

  it('offline, a cached fp32 file is used although the fp16 variant was never asked about', async () => {
    const { cache } = memoryCache();
    const hub = fakeHub(tinyRepo([]));
    const r1 = await openHubRepo({ repo: 'o/t', endpoint: EP }, { cache, fetchImpl: hub.fetchImpl, freeBytes: async () => null });
    for (const f of ['unet/config.json', 'text_encoder/config.json', 'vae/config.json', 'tokenizer/vocab.json', 'tokenizer/merges.txt']) await r1.text(f);
    for (const f of ['unet/diffusion_pytorch_model.safetensors', 'text_encoder/model.safetensors', 'vae/diffusion_pytorch_model.safetensors']) await r1.open(f);
    hub.setOffline(true);
    const p = await loadDiffusers(new MetaBackend(), await openHubRepo({ repo: 'o/t', endpoint: EP }, { cache, fetchImpl: hub.fetchImpl }));
    expect(p.files).toEqual(['o/t/unet/diffusion_pytorch_model.safetensors', 'o/t/text_encoder/model.safetensors', 'o/t/vae/diffusion_pytorch_model.safetensors']);
  });
});
