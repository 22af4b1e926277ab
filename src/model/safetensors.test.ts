import { describe, expect, it } from 'vitest';
import { f16BitsToF32, f32ToF16Bits } from '../engine/dtype.js';
import { bytesSource, openSafetensors, writeSafetensors, SafetensorsError } from './safetensors.js';

/** Build a file from a raw header object and a data section. */
function rawFile(header: unknown, data = new Uint8Array(0), lengthOverride?: number): Uint8Array {
  const hb = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(lengthOverride ?? hb.length), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

async function error(bytes: Uint8Array): Promise<SafetensorsError> {
  const e = await openSafetensors(bytesSource(bytes, 'model.safetensors')).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(SafetensorsError);
  return e as SafetensorsError;
}

describe('safetensors', () => {
  it('round-trips F32 and F16 tensors with metadata; header aligned to 8', async () => {
    const a = Float32Array.from([1, -2.5, 3.25, 0]);
    const h = Uint16Array.from([0.5, -1, 1e-3].map(f32ToF16Bits));
    const bytes = writeSafetensors([
      { name: 'b.weight', dtype: 'F16', shape: [3], data: h },
      { name: 'a.weight', dtype: 'F32', shape: [2, 2], data: a },
      { name: 'alpha', dtype: 'F32', shape: [], data: Float32Array.of(8) },
    ], { ss_network_dim: '16' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const f = await openSafetensors(bytesSource(bytes));
    expect(f.metadata).toEqual({ ss_network_dim: '16' });
    expect([...f.tensors.keys()]).toEqual(['a.weight', 'alpha', 'b.weight']);
    expect(await f.readTensor('a.weight')).toEqual(a);
    expect(await f.readTensor('alpha')).toEqual(Float32Array.of(8));
    expect([...(await f.readTensor('b.weight'))]).toEqual([...h].map(f16BitsToF32));
  });

  it('reads only the header and the tensors asked for', async () => {
    const bytes = writeSafetensors([{ name: 'w', dtype: 'F32', shape: [1000], data: new Float32Array(1000) }]);
    let read = 0;
    const src = { ...bytesSource(bytes), read: async (o: number, l: number) => ((read += l), bytes.subarray(o, o + l)) };
    await openSafetensors(src);
    expect(read).toBeLessThan(200);
  });

  it('decodes BF16', async () => {
    const raw = new Uint8Array(4);
    new DataView(raw.buffer).setUint16(0, 0x3fc0, true); // 1.5
    new DataView(raw.buffer).setUint16(2, 0xc000, true); // -2
    const f = await openSafetensors(bytesSource(rawFile({ x: { dtype: 'BF16', shape: [2], data_offsets: [0, 4] } }, raw)));
    expect([...(await f.readTensor('x'))]).toEqual([1.5, -2]);
  });

  it('truncated file', async () => {
    expect((await error(new Uint8Array(5))).message).toMatch(/model\.safetensors: the file is 5 bytes long/);
  });
  it('header length past the end', async () => {
    const e = await error(rawFile({}, new Uint8Array(0), 5000));
    expect(e.code).toBe('header-length');
    expect(e.message).toMatch(/claims 5000 bytes but the file has only/);
  });
  it('absurd header length', async () => {
    const e = await error(rawFile({}, new Uint8Array(0), 2 ** 40));
    expect(e.message).toMatch(/not a safetensors file/);
  });
  it('invalid JSON', async () => {
    const e = await error(rawFile('{"a": '));
    expect(e.code).toBe('header-json');
    expect(e.message).toMatch(/not valid JSON/);
  });
  it('entry without offsets', async () => {
    expect((await error(rawFile({ w: { dtype: 'F32', shape: [1] } }, new Uint8Array(4)))).message).toMatch(/"w" lacks a dtype, shape or data_offsets/);
  });
  it('unknown dtype', async () => {
    expect((await error(rawFile({ w: { dtype: 'Q4', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)))).message).toMatch(/unknown dtype Q4/);
  });
  it('offsets out of range', async () => {
    const e = await error(rawFile({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8)));
    expect(e.code).toBe('offsets');
    expect(e.message).toMatch(/spans bytes 0\.\.16 but the data section has 8 bytes/);
  });
  it('overlapping tensors', async () => {
    const e = await error(rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)));
    expect(e.code).toBe('overlap');
    expect(e.message).toMatch(/"a" and "b" overlap/);
  });
  it('shape and size mismatch', async () => {
    const e = await error(rawFile({ w: { dtype: 'F16', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)));
    expect(e.code).toBe('size');
    expect(e.message).toMatch(/F16 \[3\] = 6 bytes but its offsets span 8/);
  });
  it('refuses to decode integer tensors', async () => {
    const f = await openSafetensors(bytesSource(rawFile({ ids: { dtype: 'I64', shape: [1, 77], data_offsets: [0, 616] } }, new Uint8Array(616))));
    await expect(f.readTensor('ids')).rejects.toThrow(/I64; only F32, F16 and BF16/);
  });
});
