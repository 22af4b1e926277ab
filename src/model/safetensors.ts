// safetensors: lazy header parsing and per-tensor reads from any byte source, validation with named errors, and writing.
import { bf16BitsToF32, f16BitsToF32 } from '../engine/dtype.js';

/** Random access to a file's bytes: a dropped File, a URL with Range requests, or a path in Node. */
export interface ByteSource {
  readonly name: string;
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Release the underlying handle (files in Node); reads after it fail. */
  close?(): Promise<void>;
}

export type SafetensorsErrorCode = 'truncated' | 'header-length' | 'header-json' | 'entry' | 'dtype' | 'offsets' | 'overlap' | 'size' | 'unsupported-dtype' | 'http';

/** A malformed or unreadable file, with what is wrong and which file. */
export class SafetensorsError extends Error {
  constructor(readonly code: SafetensorsErrorCode, readonly file: string, detail: string) {
    super(`${file}: ${detail}`);
    this.name = 'SafetensorsError';
  }
}

const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1 };

export interface TensorInfo {
  dtype: string;
  shape: number[];
  /** Byte range within the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  source: ByteSource;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Byte offset of the data section in the file. */
  dataStart: number;
  /** Decode a floating tensor (F32, F16, BF16) to f32. */
  readTensor(name: string): Promise<Float32Array>;
  readRaw(name: string): Promise<Uint8Array>;
}

/** Parse the header (8 + N bytes) and validate every entry; tensor data is read only on request. */
export async function openSafetensors(src: ByteSource): Promise<SafetensorsFile> {
  const fail = (code: SafetensorsErrorCode, d: string): never => {
    throw new SafetensorsError(code, src.name, d);
  };
  if (src.size < 8) fail('truncated', `the file is ${src.size} bytes long, too short to be safetensors (it needs an 8-byte header length)`);
  const lenBytes = await src.read(0, 8);
  const n = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
  if (n > 100 * 2 ** 20) fail('header-length', `the header claims ${n} bytes; this is not a safetensors file (or it is corrupt)`);
  if (8 + n > src.size) fail('header-length', `the header claims ${n} bytes but the file has only ${src.size - 8} after the length: it is truncated or not safetensors`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(await src.read(8, n)));
  } catch (e) {
    fail('header-json', `the header is not valid JSON (${(e as Error).message}): the file is corrupt or not safetensors`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) fail('header-json', 'the header is not a JSON object');
  const h = header as Record<string, unknown>;
  const dataStart = 8 + n;
  const dataSize = src.size - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, v] of Object.entries(h)) {
    if (name === '__metadata__') {
      if (v && typeof v === 'object') for (const [k, s] of Object.entries(v)) metadata[k] = String(s);
      continue;
    }
    const e = v as Partial<{ dtype: unknown; shape: unknown; data_offsets: unknown }>;
    if (!e || typeof e !== 'object' || typeof e.dtype !== 'string' || !Array.isArray(e.shape) || !Array.isArray(e.data_offsets) || e.data_offsets.length !== 2)
      fail('entry', `tensor "${name}" lacks a dtype, shape or data_offsets`);
    const dtype = e.dtype as string;
    const shape = e.shape as number[];
    const [begin, end] = e.data_offsets as [number, number];
    const bytes = DTYPE_BYTES[dtype];
    if (bytes === undefined) fail('dtype', `tensor "${name}" has unknown dtype ${dtype}`);
    if (!shape.every((d) => Number.isInteger(d) && d >= 0)) fail('entry', `tensor "${name}" has an invalid shape [${shape}]`);
    if (!Number.isInteger(begin) || !Number.isInteger(end) || begin < 0 || end < begin || end > dataSize)
      fail('offsets', `tensor "${name}" spans bytes ${begin}..${end} but the data section has ${dataSize} bytes (truncated file?)`);
    const want = shape.reduce((a, b) => a * b, 1) * bytes!;
    if (end - begin !== want) fail('size', `tensor "${name}" is ${dtype} [${shape}] = ${want} bytes but its offsets span ${end - begin}`);
    tensors.set(name, { dtype, shape, begin, end });
  }
  const sorted = [...tensors.entries()].sort((a, b) => a[1].begin - b[1].begin);
  for (let i = 1; i < sorted.length; i++) {
    const [pn, p] = sorted[i - 1]!;
    const [cn, c] = sorted[i]!;
    if (c.begin < p.end && c.end > c.begin) fail('overlap', `tensors "${pn}" and "${cn}" overlap (bytes ${p.begin}..${p.end} and ${c.begin}..${c.end})`);
  }
  const readRaw = (name: string) => {
    const t = tensors.get(name);
    if (!t) throw new SafetensorsError('entry', src.name, `has no tensor "${name}"`);
    return src.read(dataStart + t.begin, t.end - t.begin);
  };
  const readTensor = async (name: string) => {
    const t = tensors.get(name);
    if (!t) throw new SafetensorsError('entry', src.name, `has no tensor "${name}"`);
    if (!['F32', 'F16', 'BF16'].includes(t.dtype)) throw new SafetensorsError('unsupported-dtype', src.name, `tensor "${name}" is ${t.dtype}; only F32, F16 and BF16 weights can be loaded`);
    return decode(await readRaw(name), t.dtype);
  };
  return { source: src, tensors, metadata, dataStart, readTensor, readRaw };
}

/** Decode little-endian F32/F16/BF16 bytes to f32. */
export function decode(raw: Uint8Array, dtype: string): Float32Array {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  if (dtype === 'F32') {
    if (raw.byteOffset % 4 === 0) return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    return Float32Array.from({ length: raw.byteLength / 4 }, (_, i) => dv.getFloat32(4 * i, true));
  }
  const n = raw.byteLength / 2;
  const out = new Float32Array(n);
  const conv = dtype === 'F16' ? f16BitsToF32 : bf16BitsToF32;
  for (let i = 0; i < n; i++) out[i] = conv(dv.getUint16(2 * i, true));
  return out;
}

/** A tensor to write: F16 data is given as raw half bits. */
export interface TensorToWrite {
  name: string;
  dtype: 'F32' | 'F16';
  shape: number[];
  data: Float32Array | Uint16Array;
}

/** Serialize tensors (sorted by name) and string metadata; the header is space-padded to a multiple of 8. */
export function writeSafetensors(tensors: readonly TensorToWrite[], metadata: Record<string, string> = {}): Uint8Array {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  for (const t of sorted) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) throw new Error(`writeSafetensors: ${t.name} has ${t.data.length} values for shape [${t.shape}]`);
    const bytes = n * (t.dtype === 'F32' ? 4 : 2);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  const pad = (8 - (enc.encode(json).length % 8)) % 8;
  json += ' '.repeat(pad);
  const hb = enc.encode(json);
  const out = new Uint8Array(8 + hb.length + off);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let p = 8 + hb.length;
  for (const t of sorted) {
    if (t.dtype === 'F32') for (let i = 0; i < t.data.length; i++, p += 4) dv.setFloat32(p, t.data[i]!, true);
    else for (let i = 0; i < t.data.length; i++, p += 2) dv.setUint16(p, t.data[i]!, true);
  }
  return out;
}

/** A byte source over a Blob or File (browser and Node 20). */
export function blobSource(blob: Blob, name = (blob as File).name ?? 'file'): ByteSource {
  return { name, size: blob.size, read: async (o, l) => new Uint8Array(await blob.slice(o, o + l).arrayBuffer()) };
}

/** A byte source over bytes already in memory (small files, tests). */
export function bytesSource(bytes: Uint8Array, name = 'bytes'): ByteSource {
  return { name, size: bytes.length, read: async (o, l) => bytes.subarray(o, Math.min(o + l, bytes.length)) };
}

/**
 * A byte source over HTTP with Range requests (Hugging Face hub files). The size comes from the
 * first ranged response's Content-Range; servers that ignore Range are refused rather than
 * downloading gigabytes into memory.
 */
export async function urlSource(url: string, fetchImpl: typeof fetch = fetch, init: RequestInit = {}): Promise<ByteSource> {
  const get = async (o: number, l: number) => {
    const res = await fetchImpl(url, { ...init, headers: { ...(init.headers as Record<string, string>), Range: `bytes=${o}-${o + l - 1}` } });
    if (res.status === 401 || res.status === 403) throw new SafetensorsError('http', url, `the server refused access (HTTP ${res.status}); gated or private repositories need a token`);
    if (res.status === 404) throw new SafetensorsError('http', url, 'not found (HTTP 404): check the repository id and file name');
    if (res.status !== 206) throw new SafetensorsError('http', url, `expected a partial response (HTTP 206) to a Range request, got HTTP ${res.status}`);
    return res;
  };
  const first = await get(0, 8);
  const m = /\/(\d+)$/.exec(first.headers.get('content-range') ?? '');
  if (!m) throw new SafetensorsError('http', url, 'the server did not report the file size (no Content-Range header)');
  await first.arrayBuffer();
  return { name: url, size: Number(m[1]), read: async (o, l) => new Uint8Array(await (await get(o, l)).arrayBuffer()) };
}
