// Seeded damaged PNG, JPEG and WebP files for the fuzz tests of both decoders (images-fuzz.test.ts in Node,
// decode-browser.test.ts in Chromium): made from the real samples and the test files, and from crafted
// headers: truncation, byte flips, bad checksums, huge or zero sizes, bogus chunk and segment lengths, bad
// filter bytes, a missing PLTE, giant iCCP profiles. The contract both decoders are held to is `fuzzProblem`.
import { readFileSync, readdirSync } from 'node:fs';
import { deflateSync, inflateSync } from 'node:zlib';
import { MAX_IMAGE_PIXELS } from '../image-header.js';
import { Rng } from '../rng.js';
import { be32, chunk, concat, ihdr, jpegSofOffset, png, pngChunkRanges, zerosZlib } from './craft.js';

const read = (url: URL) => new Uint8Array(readFileSync(url));
const samplesDir = new URL('../../../public/samples/', import.meta.url);
const testdataDir = new URL('./', import.meta.url);
const samples = readdirSync(samplesDir).filter((n) => /\.(png|jpg)$/.test(n)).map((n) => ({ name: n, bytes: read(new URL(n, samplesDir)) }));
const extra = readdirSync(testdataDir).filter((n) => /\.(png|webp)$/.test(n)).map((n) => ({ name: n, bytes: read(new URL(n, testdataDir)) }));
const pngs = [...samples, ...extra].filter((s) => s.name.endsWith('.png'));
const jpegs = samples.filter((s) => s.name.endsWith('.jpg'));
const webps = extra.filter((s) => s.name.endsWith('.webp'));
const all = [...pngs, ...jpegs, ...webps];

/** A group of cases: `make` turns a forked stream and the case index into a file name and its bytes. */
export interface FuzzGroup {
  label: string;
  seed: number;
  n: number;
  make: (r: Rng, i: number) => [string, Uint8Array];
}

/** The cases of a group, the same on every run. */
export function* fuzzCases(g: FuzzGroup): Generator<[string, Uint8Array]> {
  const r = new Rng(g.seed);
  for (let i = 0; i < g.n; i++) yield g.make(r.fork(`${g.label}/${i}`), i);
}

const INTERNALS = /undefined|typed array|Cannot read|is not a function|is not defined|NaN|call stack|Offset is outside|out of bounds|\bat .*:\d+/;

/**
 * What is wrong with one outcome, or null: a decoded image must be within the limit with width*height*4
 * bytes; an error must be an ImageDecodeError whose message is under 300 characters, starts with the file
 * name (and no other colon) and shows no JavaScript internals; either must come within 5 s.
 */
export function fuzzProblem(name: string, outcome: { width: number; height: number; bytes: number } | { error: string; message: string }, ms: number): string | null {
  if (ms > 5000) return `${name}: took ${Math.round(ms)} ms`;
  if ('error' in outcome) {
    const m = outcome.message;
    if (outcome.error !== 'ImageDecodeError') return `${name}: threw ${outcome.error}: ${m.slice(0, 200)}`;
    // `path: reason` with one colon, as the page's skipped list shows it (e2e/dataset.spec.ts).
    const reason = m.slice(name.length + 2);
    return m.length >= 300 || !m.startsWith(`${name}: `) || reason.includes(': ') || INTERNALS.test(m) ? `${name}: bad message: ${m.slice(0, 300)}` : null;
  }
  const { width: w, height: h, bytes } = outcome;
  const ok = Number.isInteger(w) && Number.isInteger(h) && w >= 1 && h >= 1 && w * h <= MAX_IMAGE_PIXELS && bytes === w * h * 4;
  return ok ? null : `${name}: decoded to an inconsistent ${w}x${h} image with ${bytes} bytes`;
}

const pick = <T,>(r: Rng, xs: readonly T[]): T => xs[r.int(0, xs.length)]!;
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]];
const HUGE_OR_ZERO = [0, 1, 2, 8000, 8001, 65535, 65536, 100000, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1] as const;

/** Rewrite a PNG chunk's body (keeping its CRC right, so only the content is damaged). */
function replaceChunk(b: Uint8Array, type: string, f: (body: Uint8Array) => Uint8Array): Uint8Array {
  return concat(b.subarray(0, 8), ...pngChunkRanges(b).map((c) => (c.type === type ? chunk(type, f(b.slice(c.start + 8, c.end - 4))) : b.subarray(c.start, c.end))));
}

/** A PNG's IDAT data, all chunks joined and inflated. */
function rawOf(b: Uint8Array): Uint8Array {
  return inflateSync(concat(...pngChunkRanges(b).filter((c) => c.type === 'IDAT').map((c) => b.subarray(c.start + 8, c.end - 4))));
}

/** The groups: 430 cases in all. */
export const FUZZ_GROUPS: FuzzGroup[] = [
  {
    label: 'truncated files',
    seed: 1,
    n: 60,
    make: (r, i) => {
      const s = all[i % all.length]!;
      return [`cut-${i}-${s.name}`, s.bytes.subarray(0, r.int(0, s.bytes.length))];
    },
  },
  {
    label: 'random byte flips',
    seed: 2,
    n: 90,
    make: (r, i) => {
      const s = all[i % all.length]!;
      const b = s.bytes.slice();
      const n = r.int(1, 9);
      // Half the flips land in the first 200 bytes, where the headers are.
      for (let k = 0; k < n; k++) {
        const at = r.bernoulli(0.5) ? r.int(0, Math.min(200, b.length)) : r.int(0, b.length);
        b[at] = b[at]! ^ r.int(1, 256);
      }
      return [`flip-${i}-${s.name}`, b];
    },
  },
  {
    label: 'PNG: bad CRCs, bogus chunk lengths, huge or zero IHDR sizes',
    seed: 3,
    n: 60,
    make: (r, i) => {
      const s = pick(r, pngs);
      const b = s.bytes.slice();
      const chunks = pngChunkRanges(b);
      const c = pick(r, chunks);
      const dv = new DataView(b.buffer);
      switch (i % 3) {
        case 0: {
          const at = c.end - 1 - r.int(0, 4);
          b[at] = b[at]! ^ 0xff;
          return [`crc-${i}-${c.type}-${s.name}`, b];
        }
        case 1:
          dv.setUint32(c.start, pick(r, [0, 1, 13, 2 ** 31 - 1, 2 ** 32 - 1, c.end - c.start, c.end - c.start - 13, r.int(0, 2 ** 32)]));
          return [`len-${i}-${c.type}-${s.name}`, b];
        default:
          return [`size-${i}-${s.name}`, replaceChunk(b, 'IHDR', (h) => {
            new DataView(h.buffer).setUint32(r.int(0, 2) * 4, pick(r, HUGE_OR_ZERO));
            return h;
          })];
      }
    },
  },
  {
    label: 'PNG: bad filter bytes and wrong-sized pixel data',
    seed: 4,
    n: 50,
    make: (r, i) => {
      const s = pick(r, pngs);
      const raw = rawOf(s.bytes).slice();
      for (let k = r.int(1, 4); k > 0; k--) raw[r.int(0, raw.length)] = r.int(5, 256);
      const cut = i % 2 ? raw.subarray(0, r.int(0, raw.length)) : concat(raw, new Uint8Array(r.int(1, 5000)));
      const idat = chunk('IDAT', deflateSync(i % 4 < 2 ? raw : cut));
      return [`filter-${i}-${s.name}`, concat(s.bytes.subarray(0, 8), ...pngChunkRanges(s.bytes).filter((c) => c.type !== 'IDAT' && c.type !== 'IEND').map((c) => s.bytes.subarray(c.start, c.end)), idat, chunk('IEND'))];
    },
  },
  {
    label: 'PNG: crafted headers (every depth and colour type, valid or not), missing PLTE, giant iCCP',
    seed: 5,
    n: 80,
    make: (r, i) => {
      const w = pick(r, [1, 3, 7, 16, 33]);
      const h = pick(r, [1, 2, 9, 16]);
      // Mostly valid depth and colour type pairs (so the pixel data is reached), sometimes invalid ones.
      const colorType = r.bernoulli(0.85) ? pick(r, [0, 2, 3, 3, 4, 6]) : pick(r, [1, 5, 7]);
      const depth = r.bernoulli(0.85) ? pick(r, ({ 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] } as Record<number, number[]>)[colorType] ?? [8]) : pick(r, [0, 3, 5, 32]);
      const ch = [1, 0, 3, 1, 2, 0, 4][colorType] ?? 1;
      const interlaced = r.bernoulli(0.3);
      const rows = (interlaced ? ADAM7 : [[0, 0, 1, 1]]).flatMap(([x0, y0, dx, dy]) => {
        const pw = Math.ceil((w - x0!) / dx!);
        return pw > 0 ? Array.from({ length: Math.max(0, Math.ceil((h - y0!) / dy!)) }, () => 1 + Math.ceil((pw * ch * Math.max(depth, 1)) / 8)) : [];
      });
      const raw = new Uint8Array(Math.max(0, rows.reduce((a, b) => a + b, 0) + (r.bernoulli(0.7) ? 0 : r.int(-3, 4))));
      for (let k = 0; k < raw.length; k++) raw[k] = r.int(0, 256);
      for (let k = 0, row = 0; row < rows.length && k < raw.length; k += rows[row++]!) raw[k] = r.bernoulli(0.97) ? r.int(0, 5) : r.int(5, 256);
      const parts = [ihdr(w, h, depth, colorType, interlaced ? 1 : 0)];
      if (colorType === 3 && r.bernoulli(0.6)) parts.push(chunk('PLTE', new Uint8Array(3 * r.int(1, 257)).map(() => r.int(0, 256))));
      if (r.bernoulli(0.3)) parts.push(chunk('tRNS', new Uint8Array(r.int(0, 20)).map(() => r.int(0, 256))));
      if (r.bernoulli(0.25)) parts.push(chunk(pick(r, ['iCCP', 'zTXt', 'iTXt']), concat(new TextEncoder().encode('x\0\0'), zerosZlib(r.int(1, 3e8)))));
      parts.push(chunk('IDAT', deflateSync(raw)));
      return [`crafted-${i}-${w}x${h}-d${depth}-c${colorType}.png`, png(...parts)];
    },
  },
  {
    label: 'JPEG: huge or zero frame sizes, missing tables, bogus segment lengths',
    seed: 6,
    n: 60,
    make: (r, i) => {
      const s = pick(r, jpegs);
      const b = s.bytes.slice();
      const sof = jpegSofOffset(b);
      if (i % 3 === 0) {
        const [w, hgt] = [pick(r, [0, 1, 255, 1000, 8000, 65535]), pick(r, [0, 1, 171, 1000, 8000, 65535])];
        b.set([hgt >> 8, hgt & 255, w >> 8, w & 255], sof + 5);
        return [`sof-${i}-${w}x${hgt}-${s.name}`, b];
      }
      // Overwrite a segment length (or a random header byte) somewhere before the scan.
      let p = 2;
      const segs: number[] = [];
      while (p + 4 < b.length && b[p + 1] !== 0xda) {
        segs.push(p);
        p += 2 + ((b[p + 2]! << 8) | b[p + 3]!);
      }
      const at = pick(r, segs);
      if (i % 3 === 1) b.set(be32(r.uint32()).subarray(2), at + 2);
      else b[at + 1] = pick(r, [0xc3, 0xc9, 0xcf, 0xc4, 0xdb, 0xdd, 0x00, 0xd9]);
      return [`seg-${i}-${s.name}`, b];
    },
  },
  {
    label: 'WebP: huge canvas sizes, bogus RIFF and chunk lengths',
    seed: 7,
    n: 30,
    make: (r, i) => {
      const s = pick(r, webps);
      const b = s.bytes.slice();
      const dv = new DataView(b.buffer);
      if (i % 3 === 0) dv.setUint32(4, r.uint32(), true);
      else if (i % 3 === 1) dv.setUint32(16, pick(r, [0, 1, 2 ** 31, r.uint32()]), true);
      else b.set([255, 255, 255, 255, 255, 255], 24); // VP8X canvas 16777216 square, or a lossy/lossless size field
      return [`webp-${i}-${s.name}`, b];
    },
  },
];
