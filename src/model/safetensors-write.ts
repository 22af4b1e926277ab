// safetensors writing: sorted keys, string metadata, header padded with spaces to a multiple of 8.
import { f32ToF16Bits } from '../engine/dtype.js';
import { SafetensorsError } from './byte-source.js';

/** A tensor to write. F16 and BF16 data is either raw half bits (Uint16Array) or floats rounded on write. */
export interface TensorToWrite {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16';
  shape: readonly number[];
  data: Float32Array | Uint16Array;
}

const BYTES = { F32: 4, F16: 2, BF16: 2 } as const;

function check(t: TensorToWrite, seen: Set<string>): void {
  const fail = (d: string): never => {
    throw new SafetensorsError('write', t.name || '(unnamed tensor)', d);
  };
  if (!t.name || t.name === '__metadata__') fail('a tensor needs a name other than "" and "__metadata__"');
  if (seen.has(t.name)) fail('the name is used by two tensors');
  seen.add(t.name);
  if (!(t.dtype in BYTES)) fail(`dtype ${String(t.dtype)} cannot be written (F32, F16 or BF16)`);
  if (t.dtype === 'F32' && !(t.data instanceof Float32Array)) fail('F32 data must be a Float32Array');
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`invalid shape [${t.shape.join(', ')}]`);
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) fail(`${t.data.length} values for shape [${t.shape.join(', ')}] (${n} needed)`);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bfloat16 bits of a float, rounded to nearest even (NaN stays NaN). */
export function f32ToBf16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Store one tensor at `at`: little-endian, F16 and BF16 rounded to nearest even when given as floats. */
function putTensor(dv: DataView, at: number, t: TensorToWrite): void {
  const { data } = t;
  const half = t.dtype === 'BF16' ? f32ToBf16Bits : f32ToF16Bits;
  if (t.dtype === 'F32') for (let i = 0; i < data.length; i++) dv.setFloat32(at + 4 * i, data[i]!, true);
  else if (data instanceof Float32Array) for (let i = 0; i < data.length; i++) dv.setUint16(at + 2 * i, half(data[i]!), true);
  else for (let i = 0; i < data.length; i++) dv.setUint16(at + 2 * i, data[i]!, true);
}

/**
 * Serialize tensors and string metadata. Header keys are sorted by name (`__metadata__` first);
 * data is laid out wider dtypes first, then by name, so every tensor is aligned to its element
 * size (the data section starts at a multiple of 8) and readers may view it in place.
 */
export function writeSafetensors(tensors: readonly TensorToWrite[], metadata: Record<string, string> = {}): Uint8Array {
  const seen = new Set<string>();
  for (const t of tensors) check(t, seen);
  for (const [k, v] of Object.entries(metadata))
    if (typeof v !== 'string') throw new SafetensorsError('write', '__metadata__', `value "${k}" is a ${typeof v}; safetensors metadata values must be strings`);
  const byName = (a: TensorToWrite, b: TensorToWrite) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const layout = [...tensors].sort((a, b) => BYTES[b.dtype] - BYTES[a.dtype] || byName(a, b));
  const offsets = new Map<string, [number, number]>();
  let end = 0;
  for (const t of layout) {
    const len = t.data.length * BYTES[t.dtype];
    offsets.set(t.name, [end, end + len]);
    end += len;
  }
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = Object.fromEntries(Object.entries(metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  for (const t of [...tensors].sort(byName)) header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: offsets.get(t.name) };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLen + end);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(headerLen), true);
  for (const t of layout) putTensor(dv, 8 + headerLen + offsets.get(t.name)![0], t);
  return out;
}
