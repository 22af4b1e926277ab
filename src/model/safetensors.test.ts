// safetensors read and write: round trips, header padding and alignment, lazy reads, BF16/F16 decoding, and errors for malformed files.
import { describe, expect, it } from 'vitest';
import { f16BitsToF32, f32ToF16Bits, packF16 } from '../engine/dtype.js';
import { blobSource, bytesSource, openSafetensors, SafetensorsError, urlSource, writeSafetensors, type ByteSource } from './safetensors.js';

const FILE = 'model.safetensors';

/** A file from a raw header (object or text) and a data section; `lengthField` overrides the length prefix. */
function rawFile(header: unknown, data = new Uint8Array(0), lengthField?: number): Uint8Array {
  const hb = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(lengthField ?? hb.length), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

async function openError(bytes: Uint8Array | ByteSource): Promise<SafetensorsError> {
  const src = bytes instanceof Uint8Array ? bytesSource(bytes, FILE) : bytes;
  const e = await openSafetensors(src).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(SafetensorsError);
  expect((e as Error).message.startsWith(`${src.name}: `)).toBe(true);
  return e as SafetensorsError;
}

const headerLength = (bytes: Uint8Array) => Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));

describe('writeSafetensors + openSafetensors', () => {
  const f32 = Float32Array.from([1, -2.5, 3.25, 0, 1e-8, -7]);
  const halfValues = [0.5, -1, 1e-3, 65504, 6e-8, -0];

  it('round-trips F32, F16 (as half bits and as floats) and a scalar, with metadata', async () => {
    const bits = Uint16Array.from(halfValues, f32ToF16Bits);
    const bytes = writeSafetensors(
      [
        { name: 'b.weight', dtype: 'F16', shape: [2, 3], data: bits },
        { name: 'c.weight', dtype: 'F16', shape: [6], data: Float32Array.from(halfValues) },
        { name: 'a.weight', dtype: 'F32', shape: [3, 2], data: f32 },
        { name: 'alpha', dtype: 'F32', shape: [], data: Float32Array.of(8) },
      ],
      { ss_network_dim: '16', modelspec_title: 'déjà vu' },
    );
    const f = await openSafetensors(bytesSource(bytes, FILE));
    expect(f.metadata).toEqual({ modelspec_title: 'déjà vu', ss_network_dim: '16' });
    expect([...f.tensors.keys()]).toEqual(['a.weight', 'alpha', 'b.weight', 'c.weight']);
    expect(f.tensors.get('b.weight')).toMatchObject({ dtype: 'F16', shape: [2, 3], length: 12 });
    expect(f.tensors.get('alpha')).toMatchObject({ dtype: 'F32', shape: [], length: 4 });
    expect(await f.readTensor('a.weight')).toEqual(f32);
    expect(await f.readTensor('alpha')).toEqual(Float32Array.of(8));
    const want = halfValues.map((v) => f16BitsToF32(f32ToF16Bits(v)));
    expect([...(await f.readTensor('b.weight'))]).toEqual(want);
    expect([...(await f.readTensor('c.weight'))]).toEqual(want);
    // The stored F16 bytes are exactly the engine's packing (low half = even element).
    const packed = new Uint8Array(packF16(halfValues).buffer);
    expect(await f.readRaw('b.weight')).toEqual(packed);
    expect(await f.readRaw('c.weight')).toEqual(packed);
  });

  it('pads the header with spaces to a multiple of 8, sorts keys and aligns every tensor', () => {
    for (const name of ['w', 'ww', 'www', 'wwww', 'wwwww']) {
      const bytes = writeSafetensors([
        { name: `${name}.h`, dtype: 'F16', shape: [3], data: new Uint16Array(3) },
        { name: 'z', dtype: 'F32', shape: [1], data: new Float32Array(1) },
      ]);
      const n = headerLength(bytes);
      expect(n % 8).toBe(0);
      const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
      expect(text).toMatch(/^\{.*\} *$/);
      const header = JSON.parse(text) as Record<string, { data_offsets: number[] }>;
      expect(Object.keys(header)).toEqual([`${name}.h`, 'z']);
      expect(header.z!.data_offsets).toEqual([0, 4]); // the F32 tensor first: 4-byte aligned
      expect(header[`${name}.h`]!.data_offsets).toEqual([4, 10]);
    }
  });

  it('refuses to write inconsistent tensors or metadata', () => {
    const ok = { name: 'w', dtype: 'F32' as const, shape: [2], data: new Float32Array(2) };
    expect(() => writeSafetensors([{ ...ok, data: new Float32Array(3) }])).toThrow(/w: 3 values for shape \[2\] \(2 needed\)/);
    expect(() => writeSafetensors([ok, ok])).toThrow(/w: the name is used by two tensors/);
    expect(() => writeSafetensors([{ ...ok, data: new Uint16Array(2) }])).toThrow(/F32 data must be a Float32Array/);
    expect(() => writeSafetensors([ok], { n: 3 as unknown as string })).toThrow(/value "n" is a number/);
  });

  it('reads only the length and the header on open, then only the tensor asked for', async () => {
    const bytes = writeSafetensors([
      { name: 'big', dtype: 'F32', shape: [100_000], data: new Float32Array(100_000) },
      { name: 'small', dtype: 'F32', shape: [4], data: Float32Array.of(1, 2, 3, 4) },
    ]);
    const reads: [number, number][] = [];
    const src: ByteSource = { name: FILE, size: bytes.length, read: async (o, l) => (reads.push([o, l]), bytes.subarray(o, o + l)) };
    const f = await openSafetensors(src);
    expect(reads).toEqual([[0, 8], [8, headerLength(bytes)]]);
    expect([...(await f.readTensor('small'))]).toEqual([1, 2, 3, 4]);
    expect(reads.slice(2)).toEqual([[f.tensors.get('small')!.offset, 16]]);
  });

  it('decodes BF16, F16 specials and tensors at odd offsets', async () => {
    const data = new Uint8Array(1 + 4 + 6 + 4);
    const dv = new DataView(data.buffer);
    dv.setUint16(1, 0x3fc0, true); // bf16 1.5
    dv.setUint16(3, 0xc000, true); // bf16 -2
    [0x7c00, 0xfc00, 0x0001].forEach((h, i) => dv.setUint16(5 + 2 * i, h, true)); // f16 inf, -inf, smallest subnormal
    dv.setFloat32(11, -0.375, true);
    const f = await openSafetensors(bytesSource(rawFile({
      flag: { dtype: 'U8', shape: [1], data_offsets: [0, 1] },
      bf: { dtype: 'BF16', shape: [2], data_offsets: [1, 5] },
      h: { dtype: 'F16', shape: [3], data_offsets: [5, 11] },
      s: { dtype: 'F32', shape: [], data_offsets: [11, 15] },
    }, data)));
    expect([...(await f.readTensor('bf'))]).toEqual([1.5, -2]);
    expect([...(await f.readTensor('h'))]).toEqual([Infinity, -Infinity, 2 ** -24]);
    expect([...(await f.readTensor('s'))]).toEqual([-0.375]);
    expect([...(await f.readRaw('flag'))]).toEqual([0]);
  });
});

describe('malformed files get errors that name the file and the problem', () => {
  it('a file shorter than 8 bytes', async () => {
    const e = await openError(new Uint8Array(5));
    expect(e.code).toBe('truncated');
    expect(e.message).toBe(`${FILE}: the file is 5 bytes long, too short to be safetensors (it starts with an 8-byte header length)`);
  });

  it('a header length past the end of the file', async () => {
    const e = await openError(rawFile({}, new Uint8Array(0), 5000));
    expect(e.code).toBe('header-length');
    expect(e.message).toMatch(/header length field says 5000 bytes but only 2 follow it: the file is truncated or not safetensors/);
  });

  it('an absurd header length (over 16 MB), printed exactly even at 2^64 - 1', async () => {
    const e = await openError(rawFile({}, new Uint8Array(0), 2 ** 40));
    expect(e.code).toBe('header-length');
    expect(e.message).toMatch(/says 1099511627776 bytes \(over 16 MB\): this is not a safetensors file/);
    const max = rawFile({});
    new DataView(max.buffer).setBigUint64(0, 2n ** 64n - 1n, true);
    expect((await openError(max)).message).toMatch(/says 18446744073709551615 bytes \(over 16 MB\)/);
  });

  it('a header length a few bytes short (the cut in the padding) or long is refused, not read shifted', async () => {
    const data = new Uint8Array(Float32Array.of(1.5, -2).buffer);
    const good = rawFile(JSON.stringify({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }) + '    ', data); // padding the cut can land in
    const n = headerLength(good);
    expect([...(await (await openSafetensors(bytesSource(good, FILE))).readTensor('w'))]).toEqual([1.5, -2]);
    for (const k of [1, 2, 3, 4]) {
      const bad = good.slice();
      new DataView(bad.buffer).setBigUint64(0, BigInt(n - k), true);
      const e = await openError(bad);
      expect(e.code).toBe('layout');
      expect(e.message).toBe(`${FILE}: the tensors end at data byte 8 but the data section has ${8 + k} bytes (file size - 8 - header length ${n - k}): the header length field is wrong or bytes were added to the file`);
    }
    const long = good.slice();
    new DataView(long.buffer).setBigUint64(0, BigInt(n + 2), true);
    expect((await openError(long)).code).toBe('header-json');
  });

  it('gaps between tensors and bytes past the last one are refused; empty tensors at a boundary are fine', async () => {
    const gap = await openError(rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, new Uint8Array(12)));
    expect(gap.code).toBe('layout');
    expect(gap.message).toMatch(/data bytes 4\.\.8 belong to no tensor \(the gap before "b"\); tensors must fill the data section without gaps/);
    const first = await openError(rawFile({ b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)));
    expect(first.message).toMatch(/data bytes 0\.\.4 belong to no tensor \(the gap before "b"\)/);
    expect((await openError(rawFile({}, new Uint8Array(3)))).message).toMatch(/the tensors end at data byte 0 but the data section has 3 bytes/);
    const inside = await openError(rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, e: { dtype: 'F32', shape: [0], data_offsets: [4, 4] } }, new Uint8Array(8)));
    expect(inside.code).toBe('overlap');
    const f = await openSafetensors(bytesSource(rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, e: { dtype: 'F16', shape: [0, 3], data_offsets: [4, 4] } }, new Uint8Array(4)), FILE));
    expect(f.tensors.get('e')).toMatchObject({ shape: [0, 3], length: 0 });
  });

  it('a header length whose bytes look like pickle magic (0x280 = 640) is still safetensors', async () => {
    let bytes: Uint8Array = new Uint8Array(8);
    for (let pad = 0; pad < 64 && headerLength(bytes) !== 640; pad++) bytes = writeSafetensors([{ name: 'w', dtype: 'F32', shape: [1], data: Float32Array.of(3) }], { note: 'x'.repeat(500 + pad) });
    expect([...bytes.subarray(0, 2)]).toEqual([0x80, 0x02]);
    const f = await openSafetensors(bytesSource(bytes, FILE));
    expect([...(await f.readTensor('w'))]).toEqual([3]);
  });

  it('shapes and offsets nested deep are refused by name, without overflowing the stack', async () => {
    const deep = (d: number) => '['.repeat(d) + ']'.repeat(d);
    for (const d of [300_000, 9]) {
      const e = await openError(rawFile(`{"w":{"dtype":"F32","shape":${deep(d)},"data_offsets":[0,4]}}`, new Uint8Array(4)));
      expect(e.code).toBe('header-json');
      expect(e.message).toMatch(/the header nests arrays or objects more than 8 levels deep \(at byte 34\)/);
    }
    // Nesting within the header limit reaches the entry checks, which say what is wrong without JSON.stringify.
    const shape = await openError(rawFile(`{"w":{"dtype":"F32","shape":[1,${deep(4)}],"data_offsets":[0,4]}}`, new Uint8Array(4)));
    expect(shape.message).toBe(`${FILE}: tensor "w" has an invalid shape [1,[…]] (a list of non-negative integers)`);
    const offs = await openError(rawFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[[0],{"a":4}]}}`, new Uint8Array(4)));
    expect(offs.message).toBe(`${FILE}: tensor "w" has invalid data_offsets [[…],{…}] (two non-negative integers, begin and end)`);
    // Brackets inside strings do not count.
    const f = await openSafetensors(bytesSource(rawFile({ __metadata__: { b: '[[[[[[[[[[{{{{{{{{{{"' }, w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)), FILE));
    expect(f.metadata.b).toBe('[[[[[[[[[[{{{{{{{{{{"');
  });

  it('a header of more than 500,000 names and values is refused before it is parsed', async () => {
    const keys = (n: number) => `{${Array.from({ length: n }, (_, i) => `"k${i}":0`).join(',')}}`;
    const e = await openError(rawFile(keys(250_001)));
    expect(e.code).toBe('header-json');
    expect(e.message).toMatch(/the header has more than 500000 names and values \(a checkpoint has about 10 per tensor/);
    expect((await openError(rawFile(`{"w":{"dtype":"F32","shape":[${'1,'.repeat(600_000)}1],"data_offsets":[0,4]}}`, new Uint8Array(4)))).message).toMatch(/more than 500000 names and values/);
    // Just under the limit the header is parsed, and the entry is what is wrong.
    expect((await openError(rawFile(`{"w":{"dtype":"F16","shape":[${'1,'.repeat(499_990)}1],"data_offsets":[0,4]}}`, new Uint8Array(4)))).message).toMatch(/tensor "w" is F16 \[1,1,.*… \(499991 items\)\] = 2 bytes but its data_offsets span 4/);
  });

  it('what a message quotes from the file is cut to about 80 characters', async () => {
    const w = (entry: object, name = 'w') => rawFile({ [name]: { dtype: 'F32', shape: [1], data_offsets: [0, 4], ...entry } }, new Uint8Array(4));
    const cases: [Uint8Array, RegExp][] = [
      [w({ dtype: 'X'.repeat(10 * 2 ** 20) }), /tensor "w" has unknown dtype "X{39}…" \(known: F64/],
      [w({ shape: [2] }, 'n'.repeat(2 ** 20)), /tensor "n{79}…" is F32 \[2\] = 8 bytes but its data_offsets span 4$/],
      [w({ shape: Array.from({ length: 250_000 }, () => 1).concat(2) }), /is F32 \[1(,1)+,… \(250001 items\)\] = 8 bytes/],
      [w({ shape: Array.from({ length: 250_000 }, () => -1) }), /has an invalid shape \[-1(,-1)+,… \(250000 items\)\]/],
      [w({ dtype: ['F32'] }), /has a dtype that is not a string \(\["F32"\]\)/],
      [rawFile({ __metadata__: { ['k'.repeat(2 ** 20)]: 1 } }), /__metadata__ value "k{79}…" is a number/],
    ];
    for (const [bytes, want] of cases) {
      const e = await openError(bytes);
      expect(e.message).toMatch(want);
      expect(e.message.length).toBeLessThan(300);
    }
  });

  it('a dtype named like an Object property is unknown, not a crash', async () => {
    for (const dtype of ['toString', '__proto__', 'constructor']) {
      const e = await openError(rawFile({ w: { dtype, shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)));
      expect(e.code).toBe('dtype');
    }
  });

  it('a header that is not valid JSON', async () => {
    const e = await openError(rawFile('{"a": '));
    expect(e.code).toBe('header-json');
    expect(e.message).toMatch(/the header is not valid JSON \(.+\): the file is corrupt or not safetensors/);
  });

  it('a header that is JSON but not an object', async () => {
    const e = await openError(rawFile('[1, 2]'));
    expect(e.code).toBe('header-json');
    expect(e.message).toMatch(/the header is JSON but not an object \(it is an array\)/);
  });

  it('a tensor entry without dtype, shape or data_offsets', async () => {
    expect((await openError(rawFile({ w: { dtype: 'F32', shape: [1] } }, new Uint8Array(4)))).message).toMatch(/tensor "w" lacks data_offsets$/);
    expect((await openError(rawFile({ w: { data_offsets: [0, 4] } }, new Uint8Array(4)))).message).toMatch(/tensor "w" lacks dtype, shape$/);
    const e = await openError(rawFile({ w: 7 }, new Uint8Array(4)));
    expect(e.code).toBe('entry');
    expect(e.message).toMatch(/tensor "w" lacks dtype, shape, data_offsets/);
  });

  it('an unknown dtype', async () => {
    const e = await openError(rawFile({ w: { dtype: 'Q4_K', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)));
    expect(e.code).toBe('dtype');
    expect(e.message).toMatch(/tensor "w" has unknown dtype "Q4_K" \(known: F64, F32, F16, BF16/);
  });

  it('offsets out of range of the data section (a truncated file)', async () => {
    const e = await openError(rawFile({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8)));
    expect(e.code).toBe('offsets');
    expect(e.message).toMatch(/tensor "w" spans data bytes 0\.\.16 but the data section has 8 bytes \(a truncated file\?\)/);
    const backwards = await openError(rawFile({ w: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, new Uint8Array(8)));
    expect(backwards.message).toMatch(/spans data bytes 8\.\.4/);
    const negative = await openError(rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, new Uint8Array(8)));
    expect(negative.message).toMatch(/tensor "w" has invalid data_offsets \[-4,0\] \(two non-negative integers, begin and end\)/);
  });

  it('overlapping tensors', async () => {
    const e = await openError(rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)));
    expect(e.code).toBe('overlap');
    expect(e.message).toMatch(/tensors "a" and "b" overlap \(data_offsets \[0, 8\] and \[4, 12\]\)/);
  });

  it('a byte length that is not product(shape) * dtype size', async () => {
    const e = await openError(rawFile({ w: { dtype: 'F16', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)));
    expect(e.code).toBe('size');
    expect(e.message).toMatch(/tensor "w" is F16 \[3\] = 6 bytes but its data_offsets span 8/);
  });

  it('an invalid shape', async () => {
    const e = await openError(rawFile({ w: { dtype: 'F32', shape: [2, -1], data_offsets: [0, 8] } }, new Uint8Array(8)));
    expect(e.message).toMatch(/tensor "w" has an invalid shape \[2,-1\]/);
  });

  it('metadata that is not a map of strings', async () => {
    const e = await openError(rawFile({ __metadata__: { steps: 10 } }));
    expect(e.code).toBe('metadata');
    expect(e.message).toMatch(/__metadata__ value "steps" is a number, not a string/);
  });

  it('a source that returns fewer bytes than it promised', async () => {
    const bytes = writeSafetensors([{ name: 'w', dtype: 'F32', shape: [4], data: new Float32Array(4) }]);
    const short: ByteSource = { name: 'cut.safetensors', size: bytes.length, read: async (o, l) => bytes.subarray(o, Math.min(o + l, bytes.length - 4)) };
    const f = await openSafetensors(short);
    const e = (await f.readTensor('w').catch((x: unknown) => x)) as SafetensorsError;
    expect(e.code).toBe('truncated');
    expect(e.message).toMatch(/^cut\.safetensors: asked for 16 bytes at offset \d+ but got 12/);
  });

  it('readTensor refuses integer tensors and names missing ones', async () => {
    const f = await openSafetensors(bytesSource(rawFile({ ids: { dtype: 'I64', shape: [1, 77], data_offsets: [0, 616] } }, new Uint8Array(616)), FILE));
    expect(f.tensors.get('ids')).toMatchObject({ dtype: 'I64', shape: [1, 77] });
    await expect(f.readTensor('ids')).rejects.toThrow(`${FILE}: tensor "ids" is I64; only F32, F16 and BF16 tensors can be read as weights`);
    await expect(f.readTensor('nope')).rejects.toThrow(`${FILE}: has no tensor "nope"`);
    expect((await f.readRaw('ids')).length).toBe(616);
  });
});

describe('byte sources', () => {
  const file = writeSafetensors([{ name: 'w', dtype: 'F32', shape: [3], data: Float32Array.of(1, 2, 3) }], { k: 'v' });

  it('a Blob or File', async () => {
    const f = await openSafetensors(blobSource(new File([file as Uint8Array<ArrayBuffer>], 'dropped.safetensors')));
    expect(f.source.name).toBe('dropped.safetensors');
    expect([...(await f.readTensor('w'))]).toEqual([1, 2, 3]);
    const e = await openError(blobSource(new Blob([new Uint8Array(3)]), 'tiny.safetensors'));
    expect(e.message).toMatch(/^tiny\.safetensors: the file is 3 bytes long/);
  });

  /** A fake server over `file`: honours Range unless told not to. */
  function server(o: { status?: number; ignoreRange?: boolean; hideContentRange?: boolean } = {}) {
    const calls: string[] = [];
    const fetchImpl = (async (_url: string, init?: RequestInit) => {
      const range = new Headers(init?.headers).get('range');
      calls.push(init?.method === 'HEAD' ? 'HEAD' : (range ?? 'GET'));
      if (o.status) return new Response('denied', { status: o.status });
      if (init?.method === 'HEAD') return new Response(null, { status: 200, headers: { 'content-length': String(file.length) } });
      const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
      if (!m || o.ignoreRange) return new Response(file as Uint8Array<ArrayBuffer>, { status: 200 });
      const [a, b] = [Number(m[1]), Math.min(Number(m[2]), file.length - 1)];
      const headers: Record<string, string> = o.hideContentRange ? {} : { 'content-range': `bytes ${a}-${b}/${file.length}` };
      return new Response(file.slice(a, b + 1), { status: 206, headers });
    }) as typeof fetch;
    return { calls, fetchImpl };
  }
  const URL_ = 'https://huggingface.co/org/model/resolve/main/unet/diffusion_pytorch_model.safetensors';

  it('a URL read with Range requests', async () => {
    const s = server();
    const f = await openSafetensors(await urlSource(URL_, s.fetchImpl));
    expect(f.metadata).toEqual({ k: 'v' });
    expect([...(await f.readTensor('w'))]).toEqual([1, 2, 3]);
    expect(s.calls.every((c) => c.startsWith('bytes='))).toBe(true);
    expect(s.calls.length).toBe(4); // probe, length, header, tensor
  });

  it('a URL whose server hides Content-Range falls back to HEAD for the size', async () => {
    const s = server({ hideContentRange: true });
    const src = await urlSource(URL_, s.fetchImpl);
    expect(src.size).toBe(file.length);
    expect(s.calls).toContain('HEAD');
  });

  it('a server that ignores Range is refused, naming the URL', async () => {
    await expect(urlSource(URL_, server({ ignoreRange: true }).fetchImpl)).rejects.toThrow(`${URL_}: the server ignored the Range request (HTTP 200 instead of 206 Partial Content)`);
  });

  it('404 and 401 name the URL and the likely cause', async () => {
    await expect(urlSource(URL_, server({ status: 404 }).fetchImpl)).rejects.toThrow(`${URL_}: not found (HTTP 404): check the repository id and the file name`);
    await expect(urlSource(URL_, server({ status: 401 }).fetchImpl)).rejects.toThrow(/resolve\/main\/unet\/diffusion_pytorch_model\.safetensors: the server refused access .*\(HTTP 401\): gated or private repositories need a token/);
    const e = (await urlSource(URL_, server({ status: 500 }).fetchImpl).catch((x: unknown) => x)) as SafetensorsError;
    expect(e.code).toBe('http');
    expect(e.message).toMatch(/failed with HTTP 500/);
  });

  it('a network failure names the URL', async () => {
    const failing = (async () => {
      throw new TypeError('Failed to fetch');
    }) as typeof fetch;
    await expect(urlSource(URL_, failing)).rejects.toThrow(`${URL_}: could not be fetched (Failed to fetch)`);
  });

  it('reads outside a source are refused', async () => {
    const src = bytesSource(file, 'mem');
    await expect(src.read(file.length - 2, 4)).rejects.toThrow(/^mem: cannot read bytes/);
    expect((await src.read(3, 0)).length).toBe(0);
  });
});
