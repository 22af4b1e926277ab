// Seeded fuzz of the safetensors reader (issue 11): several hundred damaged files made from valid ones
// (truncations, flipped bytes, header lengths off by a few bytes or absurd, bogus dtypes, shapes and
// offsets, overlaps and gaps, huge numbers, deep nesting, too many items, megabyte strings, non-object JSON, duplicate
// keys, a BOM, invalid UTF-8, pickle magic). Every case must either open to a file whose tensors exactly
// tile the data section and read back within bounds (and unchanged, when the damage left the data and
// the entry alone), or raise a SafetensorsError whose short message names the file and shows none of
// JavaScript's internals. Cases whose damage the format rules out must be refused.
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { rng } from '../engine/testing/allclose.js';
import { bytesSource, DTYPE_BYTES, FLOAT_DTYPES, openSafetensors, SafetensorsError, writeSafetensors } from './safetensors.js';

const enc = new TextEncoder();
const INTERNALS = /undefined|Cannot read|is not a function|is not defined|NaN|call stack|Invalid typed array|Offset is outside|out of bounds|\bat .*:\d+/;

/** A safetensors file from header text (padded with spaces to a multiple of 8) and data; `length` overrides the length field. */
function assemble(headerText: string, data: Uint8Array, length?: bigint, pad = true): Uint8Array {
  const h = enc.encode(headerText);
  const n = pad ? Math.ceil(h.length / 8) * 8 : h.length;
  const out = new Uint8Array(8 + n + data.length).fill(0x20, 8 + h.length, 8 + n);
  out.set(h, 8);
  out.set(data, 8 + n);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(n), true);
  return out;
}

interface Base {
  name: string;
  bytes: Uint8Array;
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  dataStart: number;
}

function base(name: string, bytes: Uint8Array): Base {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { name, bytes, header: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))), dataStart: 8 + n };
}

const r0 = rng(1);
const floats = (n: number) => Float32Array.from({ length: n }, () => r0() * 4 - 2);
const bases: Base[] = [
  base('lora.safetensors', writeSafetensors([
    { name: 'lora_unet_a.lora_down.weight', dtype: 'F16', shape: [4, 8], data: floats(32) },
    { name: 'lora_unet_a.lora_up.weight', dtype: 'F16', shape: [8, 4], data: floats(32) },
    { name: 'lora_unet_a.alpha', dtype: 'F32', shape: [], data: Float32Array.of(4) },
    { name: 'lora_te_b.lora_down.weight', dtype: 'BF16', shape: [2, 3, 1, 1], data: floats(6) },
    { name: 'w', dtype: 'F32', shape: [5], data: floats(5) },
  ], { ss_network_dim: '4', ss_network_alpha: '4', note: 'déjà vu' })),
  // Odd offsets, integer dtypes, an empty tensor, and padding the writer would not leave.
  base('mixed.safetensors', assemble(JSON.stringify({
    flag: { dtype: 'BOOL', shape: [3], data_offsets: [0, 3] },
    ids: { dtype: 'I64', shape: [1, 2], data_offsets: [3, 19] },
    empty: { dtype: 'F16', shape: [0, 4], data_offsets: [19, 19] },
    h: { dtype: 'F16', shape: [3], data_offsets: [19, 25] },
    u: { dtype: 'U8', shape: [7], data_offsets: [25, 32] },
  }) + '       ', Uint8Array.from({ length: 32 }, (_, i) => (i * 37) & 0xff))),
  base('tiny-sd1.safetensors', new Uint8Array(readFileSync(new URL('../../public/tiny-sd1.safetensors', import.meta.url)))),
];

interface Case {
  name: string;
  bytes: Uint8Array;
  /** The format rules this damage out: opening it must fail. */
  refuse?: boolean;
  /** The base this came from, when the data section and the byte positions of its tensors are unchanged. */
  intact?: Base;
}

type Gen = (b: Base, r: () => number) => Omit<Case, 'name'>;
const int = (r: () => number, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const dataOf = (b: Base) => b.bytes.subarray(b.dataStart);
const tensorNames = (b: Base) => Object.keys(b.header).filter((k) => k !== '__metadata__');
const withLength = (bytes: Uint8Array, n: bigint) => {
  const out = bytes.slice();
  new DataView(out.buffer).setBigUint64(0, n, true);
  return out;
};
const nested = (d: number) => '['.repeat(d) + '1' + ']'.repeat(d);
const long = (n: number) => 'x'.repeat(n);

/** One entry's field replaced by raw JSON text; the rest of the header and the data as they were. */
function editEntry(b: Base, r: () => number, field: 'dtype' | 'shape' | 'data_offsets', json: string): Uint8Array {
  const victim = pick(r, tensorNames(b));
  const marker = '"__FUZZ__"';
  const h = structuredClone(b.header) as Record<string, Record<string, unknown>>;
  h[victim]![field] = '__FUZZ__';
  return assemble(JSON.stringify(h).replace(marker, json), dataOf(b));
}

/** Header text rebuilt after `edit` changes the parsed header (offsets kept unless the edit moves them). */
function editHeader(b: Base, edit: (h: Record<string, Record<string, unknown>>, names: string[]) => void): Uint8Array {
  const h = structuredClone(b.header) as Record<string, Record<string, unknown>>;
  edit(h, tensorNames(b));
  return assemble(JSON.stringify(h), dataOf(b));
}

let manyItemsTexts: string[] | undefined;
/** Headers just over the item limit (built once: they are megabytes). */
const manyItems = () =>
  (manyItemsTexts ??= [
    `{"a":[${'0,'.repeat(500_000)}0]}`,
    `{${Array.from({ length: 250_001 }, (_, i) => `"${i}":{}`).join(',')}}`,
    `{"__metadata__":{${Array.from({ length: 250_001 }, (_, i) => `"m${i}":""`).join(',')}}}`,
  ]);

const generators: Record<string, Gen> = {
  truncate: (b, r) => ({ bytes: b.bytes.slice(0, int(r, 0, b.bytes.length - 1)), refuse: true }),
  truncateNearEnd: (b, r) => ({ bytes: b.bytes.slice(0, b.bytes.length - int(r, 1, 16)), refuse: true }),
  appendBytes: (b, r) => {
    const out = new Uint8Array(b.bytes.length + int(r, 1, 64));
    out.set(b.bytes);
    return { bytes: out, refuse: true };
  },
  lengthOffByFew: (b, r) => {
    const k = pick(r, [-16, -8, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 8, 16]);
    return { bytes: withLength(b.bytes, BigInt(b.dataStart - 8 + k)), refuse: true };
  },
  lengthAbsurd: (b, r) => ({
    bytes: withLength(b.bytes, pick(r, [0n, 1n, 7n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n, BigInt(b.bytes.length), BigInt(b.bytes.length - 7), 16n * 2n ** 20n + 8n])),
    refuse: true,
  }),
  flipHeaderBytes: (b, r) => {
    const out = b.bytes.slice();
    for (let i = int(r, 1, 4); i > 0; i--) out[int(r, 0, b.dataStart - 1)]! ^= 1 << int(r, 0, 7);
    return { bytes: out };
  },
  flipDataBytes: (b, r) => {
    const out = b.bytes.slice();
    if (out.length > b.dataStart) for (let i = int(r, 1, 8); i > 0; i--) out[int(r, b.dataStart, out.length - 1)] = int(r, 0, 255);
    return { bytes: out };
  },
  randomHeaderByte: (b, r) => {
    const out = b.bytes.slice();
    out[int(r, 8, b.dataStart - 1)] = pick(r, [0x00, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0xff, 0xc3, 0x80, 0x30, 0x2d]);
    return { bytes: out };
  },
  bogusDtype: (b, r) => ({
    bytes: editEntry(b, r, 'dtype', pick(r, ['"Q4_K"', '"f32"', '""', '"toString"', '"__proto__"', '"constructor"', '7', 'null', '["F32"]', '{"F32":1}', `"${long(int(r, 100, 10 * 2 ** 20))}"`, `"F16${'\\u0000'}"`, '"F8_E4M3FN"'])),
    refuse: true,
  }),
  otherDtype: (b, r) => ({ bytes: editEntry(b, r, 'dtype', JSON.stringify(pick(r, Object.keys(DTYPE_BYTES)))) }),
  bogusShape: (b, r) => ({
    bytes: editEntry(b, r, 'shape', pick(r, [
      '[-1]', '[1.5]', '[1e400]', '[9007199254740993]', '[2,"3"]', '"[2]"', 'null', '{}', '[[2]]', '[true]', nested(int(r, 2, 6)), nested(300_000),
      `[${Array(250_000).fill(1).join(',')},3]`, '[4294967296,4294967296,4294967296]', '[1e20,0]',
    ])),
  }),
  bogusOffsets: (b, r) => ({
    bytes: editEntry(b, r, 'data_offsets', pick(r, [
      '[0]', '[0,1,2]', '[]', '[-1,3]', '[0.5,4]', '[4,0]', '[1e300,1e301]', '[9007199254740992,9007199254740993]', '[18446744073709551615,18446744073709551616]',
      '["0","4"]', 'null', '{"0":0,"1":4}', '[[0],[4]]', nested(100_000), '[0,1e400]', `[${int(r, 0, 1e6)},${int(r, 0, 1e6)}]`,
    ])),
  }),
  overlapOrGap: (b, r) => {
    const names = tensorNames(b).filter((k) => {
      const t = b.header[k] as { data_offsets: [number, number] };
      return t.data_offsets[1] > t.data_offsets[0];
    });
    return {
      bytes: editHeader(b, (h) => {
        const t = h[pick(r, names)]! as { data_offsets: [number, number] };
        const s = pick(r, [-3, -2, -1, 1, 2, 3]);
        t.data_offsets = [t.data_offsets[0] + s, t.data_offsets[1] + s];
        if (t.data_offsets[0] < 0) t.data_offsets = [t.data_offsets[0] - s + 1, t.data_offsets[1] - s + 1];
      }),
      refuse: true,
    };
  },
  duplicateOffsets: (b, r) => ({
    bytes: editHeader(b, (h, names) => {
      const [a, c] = [pick(r, names), pick(r, names)];
      (h[c] as Record<string, unknown>).data_offsets = (h[a] as Record<string, unknown>).data_offsets;
      (h[c] as Record<string, unknown>).shape = (h[a] as Record<string, unknown>).shape;
      (h[c] as Record<string, unknown>).dtype = (h[a] as Record<string, unknown>).dtype;
    }),
  }),
  dropTensor: (b, r) => ({ bytes: editHeader(b, (h, names) => void delete h[pick(r, names)]) }),
  duplicateKey: (b, r) => {
    const text = JSON.stringify(b.header);
    const name = pick(r, tensorNames(b));
    const entry = JSON.stringify(b.header[name]);
    // The same name twice: JSON.parse keeps the last, whose offsets then leave the first's bytes unused or shared.
    const twin = JSON.stringify({ dtype: 'U8', shape: [1], data_offsets: [0, 1] });
    return { bytes: assemble(text.replace(`${JSON.stringify(name)}:${entry}`, `${JSON.stringify(name)}:${entry},${JSON.stringify(name)}:${twin}`), dataOf(b)) };
  },
  longName: (b, r) => ({
    bytes: editHeader(b, (h, names) => {
      const n = pick(r, names);
      h[long(int(r, 1000, 2 ** 20))] = h[n]!;
      delete h[n];
    }),
  }),
  oddNames: (b, r) => ({
    bytes: editHeader(b, (h, names) => {
      const n = pick(r, names);
      const to = pick(r, ['', '__proto__', 'constructor', 'toString', 'hasOwnProperty', '\u0000', '😀', 'a"b', '__metadata']);
      Object.defineProperty(h, to, { value: h[n], enumerable: true, configurable: true, writable: true });
      delete h[n];
    }),
  }),
  badMetadata: (b, r) => ({
    bytes: editHeader(b, (h) => {
      h.__metadata__ = pick(r, [[], 'x', 3, null, { a: 1 }, { a: null }, { a: ['x'] }, { a: { b: 'c' } }, { __proto__x: 'y', [long(2 ** 20)]: 2 }] as unknown[]) as Record<string, unknown>;
    }),
  }),
  okMetadata: (b, r) => ({ bytes: editHeader(b, (h) => void (h.__metadata__ = { ['__proto__']: 'p', big: long(int(r, 0, 100_000)), e: '' })) }),
  nonObjectJson: (b, r) => ({
    bytes: assemble(pick(r, ['[]', '[1,2]', '3', '"x"', 'null', 'true', '', ' ', '{', '}', '{}{}', '{"a":1}garbage', nested(int(r, 10, 1_000_000)), '{"a":' + nested(200_000) + '}']), dataOf(b)),
    refuse: true,
  }),
  tooManyItems: (b, r) => ({ bytes: assemble(pick(r, manyItems()), dataOf(b)), refuse: true }),
  bomAndPadding: (b, r) => {
    const text = JSON.stringify(b.header);
    const v = int(r, 0, 3);
    if (v === 0) return { bytes: assemble('\ufeff' + text, dataOf(b)) };
    if (v === 1) return { bytes: assemble(' \n\t' + text, dataOf(b)) };
    const h = enc.encode(text);
    // NUL or 0xff padding instead of spaces.
    const out = assemble(text, dataOf(b));
    out.fill(v === 2 ? 0 : 0xff, 8 + h.length, 8 + Math.ceil(h.length / 8) * 8);
    return { bytes: out, refuse: Math.ceil(h.length / 8) * 8 > h.length };
  },
  invalidUtf8: (b) => {
    const out = b.bytes.slice();
    const text = new TextDecoder().decode(out.subarray(8, b.dataStart));
    const at = text.indexOf('"', 2) + 1;
    out[8 + at] = 0xc3; // a lead byte followed by an ASCII byte
    return { bytes: out, refuse: true };
  },
  pickleMagic: (b, r) => {
    const out = b.bytes.slice();
    if (r() < 0.5) out.set([0x80, int(r, 2, 5)], 0);
    else out.set([0x50, 0x4b, 0x03, 0x04], 0);
    return { bytes: out, refuse: true };
  },
  unpadded: (b) => ({ bytes: assemble(JSON.stringify(b.header), dataOf(b), undefined, false), intact: b }),
  reordered: (b, r) => {
    const names = [...Object.keys(b.header)].sort(() => r() - 0.5);
    return { bytes: assemble(JSON.stringify(Object.fromEntries(names.map((k) => [k, b.header[k]]))), dataOf(b)), intact: b };
  },
};

const tally = { cases: 0, opened: 0, refused: 0 };
afterAll(() => console.log(`safetensors fuzz: ${tally.cases} damaged files tried, ${tally.opened} opened and read within bounds, ${tally.refused} refused with a named reason`));

/** Open one case and check the contract; returns a problem description or null. */
async function check(c: Case): Promise<string | null> {
  tally.cases++;
  let f;
  try {
    f = await openSafetensors(bytesSource(c.bytes, c.name));
  } catch (e) {
    if (!(e instanceof SafetensorsError)) return `${c.name}: threw ${(e as Error)?.constructor?.name}: ${String((e as Error)?.message).slice(0, 200)}`;
    const m = e.message;
    if (process.env.FUZZ_DUMP) console.log('MSG', m);
    // The pickle advice is long on purpose: it carries the conversion command.
    if ((m.length >= 300 && e.code !== 'pickle') || !m.startsWith(`${c.name}: `) || INTERNALS.test(m)) return `${c.name}: bad message: ${m.slice(0, 300)}`;
    tally.refused++;
    return null;
  }
  if (c.refuse) return `${c.name}: opened, but this damage must be refused`;
  // Every tensor within the file, sized by its shape, and all of them tiling the data section.
  const spans = [...f.tensors].sort((a, b) => a[1].offset - b[1].offset || a[1].length - b[1].length);
  let at = f.dataStart;
  for (const [name, t] of spans) {
    const want = t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype]!;
    if (t.offset !== at || t.length !== want) return `${c.name}: tensor ${name.slice(0, 40)} at ${t.offset} (+${t.length}, want ${want}) does not follow ${at}`;
    at += t.length;
    const raw = await f.readRaw(name);
    if (raw.length !== t.length) return `${c.name}: ${name.slice(0, 40)} read ${raw.length} bytes of ${t.length}`;
    if (FLOAT_DTYPES.includes(t.dtype) && t.length < 2 ** 20 && (await f.readTensor(name)).length !== want / DTYPE_BYTES[t.dtype]!) return `${c.name}: ${name.slice(0, 40)} decoded to the wrong length`;
    // Where the damage left the data and this entry alone, the tensor reads the bytes it had.
    const orig = c.intact?.header[name] as { data_offsets: [number, number] } | undefined;
    if (c.intact && orig) {
      const before = c.intact.bytes.subarray(c.intact.dataStart + orig.data_offsets[0], c.intact.dataStart + orig.data_offsets[1]);
      if (before.length !== raw.length || before.some((x, i) => x !== raw[i])) return `${c.name}: ${name.slice(0, 40)} reads other bytes than the undamaged file`;
    }
  }
  if (at !== c.bytes.length) return `${c.name}: the tensors end at ${at} of ${c.bytes.length} bytes`;
  tally.opened++;
  return null;
}

describe('safetensors fuzz (seeded)', () => {
  const PER_GENERATOR = 24;
  const kinds = Object.keys(generators);

  it(`opens or refuses by name ${kinds.length * PER_GENERATOR} damaged files (${kinds.length} kinds of damage x ${PER_GENERATOR}) and the valid ones`, async () => {
    const problems: string[] = [];
    for (const b of bases) {
      // The undamaged bases open and read as they are.
      const p = await check({ name: b.name, bytes: b.bytes, intact: b });
      if (p) problems.push(p);
    }
    const t0 = performance.now();
    for (const [g, kind] of kinds.entries()) {
      const r = rng(1000 + g);
      for (let i = 0; i < PER_GENERATOR; i++) {
        // The 3.6 MB tiny checkpoint for every sixth case: the others are small and quick.
        const b = i % 6 === 5 ? bases[2]! : bases[i % 2]!;
        const c = generators[kind]!(b, r);
        const p = await check({ ...c, name: `${kind}-${i}-${b.name}` });
        if (p) problems.push(p);
      }
    }
    expect(problems).toEqual([]);
    expect(tally.opened).toBeGreaterThan(20);
    expect(tally.refused).toBeGreaterThan(300);
    expect(performance.now() - t0).toBeLessThan(30_000);
  }, 60_000);
});
