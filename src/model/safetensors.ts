// safetensors reading: the header parsed and validated on open, each tensor read by byte range only when asked for.
import { bf16BitsToF32, f16BitsToF32 } from '../engine/dtype.js';
import { clip, expectLength, preview, SafetensorsError, type ByteSource, type SafetensorsErrorCode } from './byte-source.js';

export { blobSource, bytesSource, clip, preview, urlSource, SafetensorsError, type ByteSource, type SafetensorsErrorCode } from './byte-source.js';
export { writeSafetensors, type TensorToWrite } from './safetensors-write.js';

/** Bytes per element of every dtype the format defines; anything else is refused by name. */
export const DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

/** Dtypes `readTensor` decodes to f32. */
export const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];

/**
 * Largest header accepted. Real checkpoints have headers well under 1 MB (SD 1.5 with EMA weights:
 * about 150 kB). With `MAX_HEADER_ITEMS` this bounds what a hostile header costs to open (measured
 * worst case, 250,000 tiny keys: +85 MB and about a second).
 */
export const MAX_HEADER_BYTES = 16 * 2 ** 20;

/** Deepest JSON nesting accepted in a header: the format needs 3 (header, entry, shape). */
export const MAX_HEADER_DEPTH = 8;

/** Most names and values (counted as `:` and `,` outside strings) accepted in a header: about 50,000 tensors' worth. */
export const MAX_HEADER_ITEMS = 500_000;

export interface TensorInfo {
  dtype: string;
  shape: number[];
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
  /** Byte length of the tensor's data. */
  length: number;
}

export interface SafetensorsFile {
  source: ByteSource;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Byte offset of the data section in the file (8 + header length). */
  dataStart: number;
  /** Read a floating tensor (F32, F16, BF16) and decode it to f32. */
  readTensor(name: string): Promise<Float32Array>;
  /** The tensor's bytes as stored (little-endian). */
  readRaw(name: string): Promise<Uint8Array>;
}

/**
 * Read 8 + N bytes (the length and the header), validate every entry and check that the tensors
 * exactly tile the data section, as the format requires (so a header length that is a few bytes
 * off is caught, not read shifted); tensor data stays unread.
 */
export async function openSafetensors(src: ByteSource): Promise<SafetensorsFile> {
  const fail = (code: SafetensorsErrorCode, detail: string): never => {
    throw new SafetensorsError(code, src.name, detail);
  };
  if (src.size < 8) fail('truncated', `the file is ${src.size} bytes long, too short to be safetensors (it starts with an 8-byte header length)`);
  const lenBytes = expectLength(src.name, await src.read(0, 8), 0, 8);
  const pickle = pickleKind(lenBytes);
  // A u64: read as a BigInt so that a huge value is printed exactly (2^64 - 1, not 18446744073709552000).
  const big = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  const fits = big <= BigInt(MAX_HEADER_BYTES) && 8n + big <= BigInt(src.size);
  if (!fits && (pickle || isPickleCheckpointName(src.name))) fail('pickle', pickleAdvice(pickle ?? `a ${extension(src.name)} file`));
  if (big > BigInt(MAX_HEADER_BYTES)) fail('header-length', `the header length field says ${big} bytes (over ${MAX_HEADER_BYTES / 2 ** 20} MB): this is not a safetensors file, or it is corrupt`);
  if (!fits) fail('header-length', `the header length field says ${big} bytes but only ${src.size - 8} follow it: the file is truncated or not safetensors`);
  const n = Number(big);
  const headerBytes = expectLength(src.name, await src.read(8, n), 8, n);
  // Pickle magic that happens to be a plausible length (0x280 is 640) is a pickle only if no JSON object follows.
  if (pickle && headerBytes[0] !== 0x7b) fail('pickle', pickleAdvice(pickle));
  const header = parseHeader(headerBytes, fail);
  const dataStart = 8 + n;
  const metadata = parseMetadata(header.__metadata__, fail);
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(header)) {
    if (name !== '__metadata__') tensors.set(name, parseEntry(name, entry, dataStart, src.size - dataStart, fail));
  }
  checkTiling(tensors, dataStart, src.size - dataStart, n, fail);

  const info = (name: string): TensorInfo => tensors.get(name) ?? fail('missing', `has no tensor "${clip(name)}"`);
  const readRaw = async (name: string) => {
    const t = info(name);
    return expectLength(src.name, await src.read(t.offset, t.length), t.offset, t.length);
  };
  const readTensor = async (name: string) => {
    const t = info(name);
    if (!FLOAT_DTYPES.includes(t.dtype)) fail('unsupported-dtype', `tensor "${clip(name)}" is ${t.dtype}; only F32, F16 and BF16 tensors can be read as weights`);
    return decodeFloats(await readRaw(name), t.dtype);
  };
  return { source: src, tensors, metadata, dataStart, readTensor, readRaw };
}

/** What the first bytes say a non-safetensors PyTorch file is, or null: torch.save writes a zip archive (PyTorch 1.6+) or a bare pickle stream. */
function pickleKind(first: Uint8Array): string | null {
  if (first[0] === 0x50 && first[1] === 0x4b && first[2] === 0x03 && first[3] === 0x04) return 'a zip archive, the format torch.save writes';
  if (first[0] === 0x80 && first[1]! >= 2 && first[1]! <= 5) return 'a pickle stream, the format older torch.save wrote';
  return null;
}

const extension = (name: string) => /\.[^./\\]+$/.exec(name)?.[0].toLowerCase() ?? '';

/** Names PyTorch pickle checkpoints go by (.ckpt, .pt, .pth, .bin, .pkl). */
export function isPickleCheckpointName(name: string): boolean {
  return ['.ckpt', '.pt', '.pth', '.bin', '.pkl'].includes(extension(name));
}

/**
 * What to tell someone holding a PyTorch pickle checkpoint (`kind` says how it was recognised):
 * why it is not opened, and how to convert it to safetensors. The page's file picker shows it for
 * a .ckpt; `openSafetensors` raises it (code 'pickle') for pickle bytes or a .ckpt-named non-safetensors file.
 */
export function pickleAdvice(kind = 'a PyTorch checkpoint'): string {
  return (
    `this is a PyTorch pickle checkpoint (${kind}), not safetensors. LoRASmith does not open pickles: loading one can run code hidden in the file, and a browser cannot read them. ` +
    'Convert it once to .safetensors and load that: with Python, `pip install torch safetensors`, then ' +
    `python -c "import torch, safetensors.torch as st; sd = torch.load('model.ckpt', map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); st.save_file({k: v.detach().clone().contiguous() for k, v in sd.items() if isinstance(v, torch.Tensor)}, 'model.safetensors')" ` +
    "(or kohya_ss's or AUTOMATIC1111's checkpoint tools, saving as safetensors). Most model pages also offer the same model as .safetensors."
  );
}

type Fail = (code: SafetensorsErrorCode, detail: string) => never;

/**
 * What is wrong with the header's shape before JSON.parse builds it, or null: nesting deeper than
 * `MAX_HEADER_DEPTH` (300,000 levels parse, but cost memory and overflow anything that walks them
 * recursively) or more than `MAX_HEADER_ITEMS` names and values (a 16 MB header of tiny keys took
 * half a gigabyte and 20 s to parse and list, one of empty arrays 350 MB). One pass; strings are skipped.
 */
function headerShapeProblem(bytes: Uint8Array): string | null {
  let depth = 0;
  let items = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_HEADER_DEPTH) return `the header nests arrays or objects more than ${MAX_HEADER_DEPTH} levels deep (at byte ${i}); a safetensors header nests 3`;
    } else if (c === 0x5d || c === 0x7d) depth--;
    else if ((c === 0x3a || c === 0x2c) && ++items > MAX_HEADER_ITEMS)
      return `the header has more than ${MAX_HEADER_ITEMS} names and values (a checkpoint has about 10 per tensor, a few thousand tensors)`;
  }
  return null;
}

function parseHeader(bytes: Uint8Array, fail: Fail): Record<string, unknown> {
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    fail('header-json', 'the header is not valid UTF-8 text: the file is corrupt or not safetensors');
  }
  const problem = headerShapeProblem(bytes);
  if (problem) fail('header-json', `${problem}: the file is corrupt or not safetensors`);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    fail('header-json', `the header is not valid JSON (${clip((e as Error).message, 120)}): the file is corrupt or not safetensors`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header))
    fail('header-json', `the header is JSON but not an object (it is ${Array.isArray(header) ? 'an array' : header === null ? 'null' : typeof header})`);
  return header as Record<string, unknown>;
}

/** `__metadata__` is a string-to-string map (the reference implementation refuses anything else). */
function parseMetadata(raw: unknown, fail: Fail): Record<string, string> {
  if (raw === undefined) return {};
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('metadata', '__metadata__ is not an object of strings');
  const entries = Object.entries(raw as object);
  for (const [k, v] of entries) if (typeof v !== 'string') fail('metadata', `__metadata__ value "${clip(k)}" is ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`}, not a string`);
  // fromEntries defines own properties, so a key named "__proto__" is kept as data.
  return Object.fromEntries(entries) as Record<string, string>;
}

/** A flat array of non-negative safe integers (shapes and data_offsets), checked before anything quotes it. */
const isIndexArray = (v: unknown): v is number[] => Array.isArray(v) && v.every((d) => Number.isSafeInteger(d) && d >= 0);

function parseEntry(name: string, entry: unknown, dataStart: number, dataSize: number, fail: Fail): TensorInfo {
  const q = `"${clip(name)}"`;
  const e = (entry ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  const missing = (['dtype', 'shape', 'data_offsets'] as const).filter((k) => typeof entry !== 'object' || e[k] === undefined);
  if (missing.length) fail('entry', `tensor ${q} lacks ${missing.join(', ')}`);
  if (typeof e.dtype !== 'string') fail('entry', `tensor ${q} has a dtype that is not a string (${preview(e.dtype)})`);
  const dtype = e.dtype as string;
  const bytes = Object.hasOwn(DTYPE_BYTES, dtype) ? DTYPE_BYTES[dtype]! : fail('dtype', `tensor ${q} has unknown dtype ${preview(dtype, 40)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`);
  const shape = e.shape;
  if (!isIndexArray(shape)) fail('entry', `tensor ${q} has an invalid shape ${preview(shape)} (a list of non-negative integers)`);
  const offs = e.data_offsets;
  if (!isIndexArray(offs) || offs.length !== 2) fail('offsets', `tensor ${q} has invalid data_offsets ${preview(offs)} (two non-negative integers, begin and end)`);
  const dims = shape as number[];
  const [begin, end] = offs as [number, number];
  if (end < begin || end > dataSize) fail('offsets', `tensor ${q} spans data bytes ${begin}..${end} but the data section has ${dataSize} bytes (a truncated file?)`);
  const want = dims.reduce((a, b) => a * b, 1) * bytes;
  if (end - begin !== want) fail('size', `tensor ${q} is ${dtype} ${preview(dims)} = ${want} bytes but its data_offsets span ${end - begin}`);
  return { dtype, shape: dims, offset: dataStart + begin, length: end - begin };
}

/**
 * The format requires the tensors, sorted by offset, to cover the data section exactly: no gaps,
 * no shared bytes, the last ending at the file's end. A header length a few bytes short (the cut
 * in the header's space padding) still parses, but leaves bytes past the last tensor: refused here.
 */
function checkTiling(tensors: Map<string, TensorInfo>, dataStart: number, dataSize: number, headerLen: number, fail: Fail): void {
  const range = (t: TensorInfo) => `[${t.offset - dataStart}, ${t.offset - dataStart + t.length}]`;
  const spans = [...tensors].sort((a, b) => a[1].offset - b[1].offset || a[1].length - b[1].length);
  let at = 0;
  let prev: [string, TensorInfo] | undefined;
  for (const [name, t] of spans) {
    const begin = t.offset - dataStart;
    if (begin < at)
      fail('overlap', `tensors "${clip(prev![0], 60)}" and "${clip(name, 60)}" overlap (data_offsets ${range(prev![1])} and ${range(t)})`);
    if (begin > at)
      fail('layout', `data bytes ${at}..${begin} belong to no tensor (the gap before "${clip(name)}"); tensors must fill the data section without gaps: the file is corrupt`);
    at = begin + t.length;
    prev = [name, t];
  }
  if (at !== dataSize)
    fail('layout', `the tensors end at data byte ${at} but the data section has ${dataSize} bytes (file size - 8 - header length ${headerLen}): the header length field is wrong or bytes were added to the file`);
}

const littleEndian = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
let f16Table: Float32Array | null = null;

/** All 65536 half values, so decoding a tensor is one table lookup per element. */
function halfTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32(h);
  }
  return f16Table;
}

/** Decode little-endian F32, F16 or BF16 bytes to f32 (a fresh, aligned array). */
export function decodeFloats(raw: Uint8Array, dtype: string): Float32Array {
  const size = dtype === 'F32' ? 4 : 2;
  if (!FLOAT_DTYPES.includes(dtype)) throw new Error(`decodeFloats: ${dtype} is not a float dtype this reader decodes`);
  if (raw.byteLength % size) throw new Error(`decodeFloats: ${raw.byteLength} bytes is not a whole number of ${dtype} values`);
  const n = raw.byteLength / size;
  if (!littleEndian) {
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    if (dtype === 'F32') return Float32Array.from({ length: n }, (_, i) => dv.getFloat32(4 * i, true));
    const conv = dtype === 'F16' ? f16BitsToF32 : bf16BitsToF32;
    return Float32Array.from({ length: n }, (_, i) => conv(dv.getUint16(2 * i, true)));
  }
  // An aligned copy: typed-array views need offsets that are multiples of the element size.
  const aligned = raw.byteOffset % size === 0 ? raw : raw.slice();
  if (dtype === 'F32') return new Float32Array(aligned.buffer.slice(aligned.byteOffset, aligned.byteOffset + aligned.byteLength));
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
  const out = new Float32Array(n);
  if (dtype === 'F16') {
    const table = halfTable();
    for (let i = 0; i < n; i++) out[i] = table[halves[i]!]!;
  } else {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) bits[i] = halves[i]! << 16;
  }
  return out;
}
