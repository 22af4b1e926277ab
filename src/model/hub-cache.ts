// Hugging Face hub repositories read through the browser's Cache API: each file is downloaded once, whole, with progress, and later visits read it from disk.
import { formatBytes } from '../engine/bytes.js';
import { blobSource, urlSource, type ByteSource } from './byte-source.js';
import type { FileWhere, LoadProgress, RepoFiles } from './pipeline.js';

/** The public hub; mirrors and test servers answer the same `/<repo>/resolve/<revision>/<path>` layout. */
export const HF_ENDPOINT = 'https://huggingface.co';
/** Cache Storage bucket for hub files; bump the suffix if what is stored changes meaning. */
export const HUB_CACHE_NAME = 'lorasmith-hub-v1';
/** The byte count the server announced, stored with each entry so that a short entry is never trusted. */
const LENGTH_HEADER = 'x-lorasmith-content-length';
/** Marks a cache entry that records a file the repository lacks (an absent fp16 variant), so that it is asked about once. */
const MISSING_HEADER = 'x-lorasmith-missing';

/** Which repository, where, at which revision. */
export interface HubRef {
  repo: string;
  endpoint?: string;
  revision?: string;
}

/** The part of the Cache API used here (an in-memory stand-in serves the Node tests). */
export type CacheLike = Pick<Cache, 'match' | 'put' | 'delete'>;

export interface HubRepoOptions {
  /** Where files are kept; `undefined` opens {@link HUB_CACHE_NAME}, `null` turns caching off. */
  cache?: CacheLike | null;
  fetchImpl?: typeof fetch;
  /** Download progress of one file; `stage` names it and the bytes in words. */
  onProgress?: (p: LoadProgress) => void;
  /** Bytes the origin may still store, or null when unknown (defaults to `navigator.storage.estimate()`). */
  freeBytes?: () => Promise<number | null>;
}

/** Where a load's files came from, for the page's status line. */
export interface HubLoadReport {
  cachedFiles: number;
  downloadedFiles: number;
  downloadedBytes: number;
  /** Files read from the network without being cached (no Cache API, or not enough room). */
  uncachedFiles: number;
  /** Why some files were not cached, when that happened. */
  note?: string;
}

export type HubErrorCode = 'repo' | 'endpoint' | 'not-found' | 'refused' | 'http' | 'offline' | 'interrupted' | 'storage';

/** A hub file that could not be had: the message names the repository, the file and what to check. */
export class HubError extends Error {
  constructor(
    readonly code: HubErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HubError';
  }
}

export interface HubRepo extends RepoFiles {
  report(): HubLoadReport;
}

/** Download progress counts up in one unit, so its figures line up as they grow. */
const mib = (b: number) => formatBytes(b, { unit: 'MiB' });

/** `https://host` from what a person typed; refuses anything that is not an http(s) URL. */
export function normalizeEndpoint(endpoint: string | undefined): string {
  const e = (endpoint ?? '').trim() || HF_ENDPOINT;
  let u: URL;
  try {
    u = new URL(e);
  } catch {
    throw new HubError('endpoint', `The Hub endpoint "${e}" is not a URL; use something like ${HF_ENDPOINT}`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new HubError('endpoint', `The Hub endpoint "${e}" must start with https:// (or http://)`);
  return e.replace(/\/+$/, '');
}

/** The resolve URL of one file, which is also its cache key. */
export function hubFileUrl(ref: HubRef, path: string): string {
  const rev = encodeURIComponent(ref.revision?.trim() || 'main');
  return `${normalizeEndpoint(ref.endpoint)}/${ref.repo.trim()}/resolve/${rev}/${path}`;
}

function statusError(repo: string, endpoint: string, path: string, status: number): HubError {
  if (status === 404)
    return new HubError('not-found', `${repo}: ${path} was not found on ${endpoint} (HTTP 404). Check the repository id (owner/name), the revision, and that the repository is in diffusers layout.`);
  if (status === 401 || status === 403)
    return new HubError('refused', `${repo}: ${endpoint} refused ${path} (HTTP ${status}). The repository does not exist, or it is private or gated; LoRASmith sends no access token, so only public repositories load.`);
  return new HubError('http', `${repo}: downloading ${path} from ${endpoint} failed with HTTP ${status}; try again later or check the Hub endpoint.`);
}

async function defaultCache(): Promise<{ cache: CacheLike | null; note?: string }> {
  if (typeof caches === 'undefined') return { cache: null, note: 'this page has no Cache Storage (it needs https or localhost)' };
  try {
    return { cache: await caches.open(HUB_CACHE_NAME) };
  } catch (e) {
    return { cache: null, note: `the browser refused Cache Storage (${(e as Error).message})` };
  }
}

async function defaultFreeBytes(): Promise<number | null> {
  const storage = (globalThis as { navigator?: Navigator }).navigator?.storage;
  if (!storage?.estimate) return null;
  const { quota, usage } = await storage.estimate();
  return quota === undefined ? null : quota - (usage ?? 0);
}

/**
 * A diffusers repository on the hub, cached in the browser. A file is looked up in the cache
 * first (no request at all when it is there); otherwise it is downloaded whole, streamed into the
 * cache as it arrives (never held in memory), and read back as the cache's disk-backed Blob, so
 * that safetensors tensors are byte-range slices of a local file. Cache Storage commits an entry
 * only when its body completes, and a body shorter than the server announced errors the stream,
 * so an interrupted download leaves nothing behind. Without Cache Storage, or without room for a
 * file, weights are read with HTTP Range requests instead and the report says why.
 */
export async function openHubRepo(ref: HubRef, o: HubRepoOptions = {}): Promise<HubRepo> {
  const repo = ref.repo.trim().replace(/^\/+|\/+$/g, '');
  if (!repo || /\s|\/\/|\.\./.test(repo)) throw new HubError('repo', `"${ref.repo}" is not a Hugging Face repository id; it looks like owner/name, e.g. stable-diffusion-v1-5/stable-diffusion-v1-5`);
  const endpoint = normalizeEndpoint(ref.endpoint);
  const where: HubRef = { repo, endpoint, revision: ref.revision };
  const fetchImpl = o.fetchImpl ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  const opened = o.cache === undefined ? await defaultCache() : { cache: o.cache, note: o.cache ? undefined : 'caching is off' };
  const cache = opened.cache;
  const freeBytes = o.freeBytes ?? defaultFreeBytes;
  const report: HubLoadReport = { cachedFiles: 0, downloadedFiles: 0, downloadedBytes: 0, uncachedFiles: 0 };
  const uncached = (why: string | undefined) => {
    report.uncachedFiles++;
    report.note ??= why;
  };

  const fromCache = async (url: string): Promise<Blob | null> => {
    const hit = await cache?.match(url);
    if (!hit || hit.headers.has(MISSING_HEADER)) return null;
    const blob = await hit.blob();
    const want = Number(hit.headers.get(LENGTH_HEADER) ?? 0);
    if (blob.size >= want) return blob;
    await cache!.delete(url);
    return null;
  };

  const request = async (path: string, url: string): Promise<Response> => {
    const res = await fetchImpl(url).catch((e: unknown) => {
      throw new HubError('offline', `${repo}: could not download ${path} from ${endpoint} (${(e as Error).message}), and it is not in the browser cache. Check the network connection and the Hub endpoint (a custom endpoint must allow cross-origin requests).`);
    });
    if (res.ok) return res;
    await res.body?.cancel().catch(() => undefined);
    throw statusError(repo, endpoint, path, res.status);
  };

  /** The cached Blob, or an uncached response, or null when the bytes could not be kept and must be read again. */
  const get = async (path: string, url: string): Promise<Blob | Response | null> => {
    const res = await request(path, url);
    const total = Number(res.headers.get('content-length') ?? 0) || 0;
    if (!cache) return res;
    const free = total ? await freeBytes().catch(() => null) : null;
    if (free !== null && total > free) {
      report.note ??= `${path} needs ${mib(total)} but the browser lets this site store only ${mib(Math.max(0, free))} more`;
      return res;
    }
    return download(path, url, res, total);
  };

  const download = async (path: string, url: string, res: Response, total: number): Promise<Blob | null> => {
    let loaded = 0, last = 0, complete = false;
    const progress = () => o.onProgress?.({ stage: `${path} (${mib(loaded)}${total ? ` of ${mib(total)}` : ''} downloaded)`, loadedBytes: loaded, totalBytes: total });
    progress();
    const counted = res.body!.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, ctl) {
          loaded += chunk.byteLength;
          if (Date.now() - last >= 100) {
            last = Date.now();
            progress();
          }
          ctl.enqueue(chunk);
        },
        flush(ctl) {
          // A decoded (gzip) body is longer than Content-Length; only a shorter one means the transfer was cut.
          if (total && loaded < total) ctl.error(new Error(`the connection closed after ${loaded} of ${total} bytes`));
          else complete = true;
        },
      }),
    );
    const headers = { 'content-type': res.headers.get('content-type') ?? 'application/octet-stream', [LENGTH_HEADER]: String(total) };
    try {
      await cache!.put(url, new Response(counted, { headers }));
    } catch (e) {
      const msg = (e as Error).message;
      if (!complete) throw new HubError('interrupted', `${repo}: the download of ${path} from ${endpoint} stopped after ${mib(loaded)}${total ? ` of ${mib(total)}` : ''} (${msg}); nothing was cached. Load again to retry.`);
      if ((e as Error).name !== 'QuotaExceededError') throw new HubError('storage', `${repo}: ${path} was downloaded but the browser could not store it (${msg}).`);
      report.note ??= `the browser's storage for this site is full (${path}, ${mib(loaded)})`;
      return null;
    }
    progress();
    const blob = await fromCache(url);
    if (!blob) throw new HubError('storage', `${repo}: ${path} was downloaded but is missing from the browser cache right after; the browser may have evicted it for lack of space.`);
    report.downloadedFiles++;
    report.downloadedBytes += blob.size;
    return blob;
  };

  /** The file's bytes from the cache (or fresh in it), or the network response when it cannot be cached. */
  const fetchFile = async (path: string): Promise<{ url: string; got: Blob | Response | null }> => {
    const url = hubFileUrl(where, path);
    const hit = await fromCache(url);
    if (hit) {
      report.cachedFiles++;
      return { url, got: hit };
    }
    return { url, got: await get(path, url) };
  };

  /** Whether the repository has `path`: the cache answers first (a file, or a remembered absence), then a HEAD request, whose 404 is remembered. */
  const locate = async (path: string, lo: { localOnly?: boolean } = {}): Promise<FileWhere> => {
    const url = hubFileUrl(where, path);
    if ((await cache?.match(url))?.headers.has(MISSING_HEADER)) return 'missing';
    if (await fromCache(url)) return 'local';
    if (lo.localOnly) return 'unknown';
    const res = await fetchImpl(url, { method: 'HEAD' }).catch((e: unknown) => {
      throw new HubError('offline', `${repo}: could not ask ${endpoint} whether it has ${path} (${(e as Error).message}).`);
    });
    if (res.ok) return 'remote';
    if (res.status !== 404) throw statusError(repo, endpoint, path, res.status);
    await cache?.put(url, new Response(null, { headers: { [MISSING_HEADER]: '1' } })).catch(() => undefined);
    return 'missing';
  };

  return {
    name: repo,
    locate,
    async open(path): Promise<ByteSource> {
      const { url, got } = await fetchFile(path);
      if (got instanceof Blob) return blobSource(got, `${repo}/${path}`);
      await got?.body?.cancel().catch(() => undefined);
      uncached(opened.note);
      return urlSource(url, fetchImpl);
    },
    async text(path): Promise<string> {
      const { url, got } = await fetchFile(path);
      if (got instanceof Blob) return got.text();
      uncached(opened.note);
      return (got ?? (await request(path, url))).text();
    },
    report: () => ({ ...report }),
  };
}

/** One repository's files kept in the hub cache. */
export interface CachedRepo {
  /** `owner/name`, and the endpoint and revision it came from. */
  repo: string;
  endpoint: string;
  revision: string;
  files: number;
  bytes: number;
}

/** What the hub cache holds, per repository (an empty list without Cache Storage). */
export async function hubCacheContents(cache?: Pick<Cache, 'keys' | 'match'>): Promise<CachedRepo[]> {
  const c = cache ?? (typeof caches === 'undefined' ? null : await caches.open(HUB_CACHE_NAME));
  if (!c) return [];
  const byRepo = new Map<string, CachedRepo>();
  for (const req of await c.keys()) {
    const m = /^(https?:\/\/.+?)\/(.+)\/resolve\/([^/]+)\/.+$/.exec(req.url);
    if (!m) continue;
    const [, endpoint = '', repo = '', rev = ''] = m;
    const key = `${endpoint} ${repo} ${rev}`;
    const res = await c.match(req.url);
    if (res?.headers.has(MISSING_HEADER)) continue;
    const entry = byRepo.get(key) ?? { repo, endpoint, revision: decodeURIComponent(rev), files: 0, bytes: 0 };
    entry.files++;
    entry.bytes += Number(res?.headers.get(LENGTH_HEADER) ?? 0) || ((await res?.blob())?.size ?? 0);
    byRepo.set(key, entry);
  }
  return [...byRepo.values()].sort((a, b) => a.repo.localeCompare(b.repo));
}

/** Delete every downloaded hub file from this browser; the next load downloads again. */
export async function clearHubCache(): Promise<void> {
  if (typeof caches !== 'undefined') await caches.delete(HUB_CACHE_NAME);
}
