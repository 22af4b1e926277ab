// Random-access byte sources (a dropped File, a URL read with HTTP Range requests, bytes in memory) and the error they share with the safetensors reader.

/** Random access to a file's bytes without holding the file: checkpoints are 2 to 7 GB. */
export interface ByteSource {
  /** What the user would recognise: a file name, a path or a URL. Errors name it. */
  readonly name: string;
  readonly size: number;
  /** Exactly `length` bytes at `offset`, or a rejection naming the source. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Release the underlying handle (files in Node); reads after it fail. */
  close?(): Promise<void>;
}

export type SafetensorsErrorCode =
  | 'open'
  | 'truncated'
  | 'header-length'
  | 'header-json'
  | 'entry'
  | 'metadata'
  | 'dtype'
  | 'offsets'
  | 'overlap'
  | 'layout'
  | 'size'
  | 'missing'
  | 'unsupported-dtype'
  | 'http'
  | 'pickle'
  | 'write';

/** A malformed or unreadable file: the message starts with the file's name and says what is wrong. */
export class SafetensorsError extends Error {
  constructor(
    readonly code: SafetensorsErrorCode,
    readonly file: string,
    detail: string,
  ) {
    super(`${file}: ${detail}`);
    this.name = 'SafetensorsError';
  }
}

/** At most `max` characters of `text`, cut with "…": what a message quotes from a file (names, dtypes) can be megabytes. */
export function clip(text: string, max = 80): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * A short, safe rendering of a JSON value for a message: strings quoted and clipped, arrays shown
 * one level deep (nested arrays and objects as `[…]` and `{…}`), never more than about `max`
 * characters. Unlike JSON.stringify it cannot overflow the stack on deep nesting or quote megabytes.
 */
export function preview(value: unknown, max = 80): string {
  const one = (v: unknown): string =>
    typeof v === 'string' ? JSON.stringify(clip(v, 20)) : Array.isArray(v) ? '[…]' : v !== null && typeof v === 'object' ? '{…}' : String(v);
  if (typeof value === 'string') return JSON.stringify(clip(value, max));
  if (!Array.isArray(value)) return clip(one(value), max);
  let out = '[';
  for (let i = 0; i < value.length; i++) {
    const next = (i ? ',' : '') + one(value[i]);
    if (out.length + next.length > max - 2) return `${out}${i ? ',' : ''}… (${value.length} items)]`;
    out += next;
  }
  return `${out}]`;
}

/** Reject reads outside the source; returns true when there is nothing to read. */
function checkRange(name: string, size: number, offset: number, length: number): boolean {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size)
    throw new SafetensorsError('truncated', name, `cannot read bytes ${offset}..${offset + length}: the file has ${size} bytes`);
  return length === 0;
}

/** A short read means the file changed or was cut off after its size was taken. */
export function expectLength(name: string, bytes: Uint8Array, offset: number, length: number): Uint8Array {
  if (bytes.byteLength !== length)
    throw new SafetensorsError('truncated', name, `asked for ${length} bytes at offset ${offset} but got ${bytes.byteLength}: the file is truncated or changed while being read`);
  return bytes;
}

/** A byte source over a Blob or File (browsers, and Node 20+). */
export function blobSource(blob: Blob, name = (blob as Partial<File>).name || 'file'): ByteSource {
  return {
    name,
    size: blob.size,
    read: async (offset, length) => {
      if (checkRange(name, blob.size, offset, length)) return new Uint8Array(0);
      return expectLength(name, new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()), offset, length);
    },
  };
}

/** A byte source over bytes already in memory (small files such as a LoRA, and tests). */
export function bytesSource(bytes: Uint8Array, name = 'bytes'): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    read: async (offset, length) => (checkRange(name, bytes.byteLength, offset, length) ? new Uint8Array(0) : bytes.subarray(offset, offset + length)),
  };
}

/** Turn an unusable HTTP status into an error that names the URL and what to do. */
function httpError(url: string, status: number, what: string): SafetensorsError {
  if (status === 401 || status === 403) return new SafetensorsError('http', url, `the server refused access to ${what} (HTTP ${status}): gated or private repositories need a token`);
  if (status === 404) return new SafetensorsError('http', url, `not found (HTTP 404): check the repository id and the file name`);
  return new SafetensorsError('http', url, `${what} failed with HTTP ${status}`);
}

async function fetchOrExplain(fetchImpl: typeof fetch, url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetchImpl(url, init);
  } catch (e) {
    throw new SafetensorsError('http', url, `could not be fetched (${(e as Error).message}): offline, blocked by CORS, or the host is unreachable`);
  }
}

/** The total size from `Content-Range: bytes 0-7/12345`, or null when absent or `*`. */
function sizeFromContentRange(res: Response): number | null {
  const m = /\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '');
  return m ? Number(m[1]) : null;
}

/**
 * A byte source over HTTP with Range requests (Hugging Face hub files). A first ranged request
 * learns the size from Content-Range (a HEAD's Content-Length when that header is hidden). A
 * server that ignores Range is refused rather than downloading gigabytes into memory.
 */
export async function urlSource(url: string, fetchImpl: typeof fetch = fetch, init: RequestInit = {}): Promise<ByteSource> {
  const ranged = async (offset: number, length: number): Promise<Response> => {
    const headers = new Headers(init.headers);
    headers.set('Range', `bytes=${offset}-${offset + length - 1}`);
    const res = await fetchOrExplain(fetchImpl, url, { ...init, headers });
    if (res.status === 206) return res;
    await res.body?.cancel().catch(() => undefined);
    if (res.status === 200)
      throw new SafetensorsError('http', url, 'the server ignored the Range request (HTTP 200 instead of 206 Partial Content); large checkpoints can only be read from servers that support byte ranges');
    throw httpError(url, res.status, `a ranged read of ${length} bytes at ${offset}`);
  };
  const first = await ranged(0, 8);
  await first.arrayBuffer();
  let size = sizeFromContentRange(first);
  if (size === null) {
    const head = await fetchOrExplain(fetchImpl, url, { ...init, method: 'HEAD' });
    const len = head.ok ? head.headers.get('content-length') : null;
    if (len === null || !/^\d+$/.test(len)) throw new SafetensorsError('http', url, 'the server reported neither Content-Range nor Content-Length, so the file size is unknown');
    size = Number(len);
  }
  const total = size;
  return {
    name: url,
    size: total,
    read: async (offset, length) => {
      if (checkRange(url, total, offset, length)) return new Uint8Array(0);
      return expectLength(url, new Uint8Array(await (await ranged(offset, length)).arrayBuffer()), offset, length);
    },
  };
}
