// Seeded fuzz of the Node image decoder (issue 11): the few hundred damaged PNG, JPEG and WebP files of
// testdata/fuzz-cases.ts (truncation, byte flips, bad checksums, huge or zero sizes, bogus chunk and segment
// lengths, bad filter bytes, a missing PLTE, giant iCCP profiles). Every case must either decode to a
// consistent image within the pixel limit or raise an ImageDecodeError whose message is short, names the
// file and shows none of the decoders' JavaScript internals. decode-browser.test.ts runs them in Chromium.
import { crc32 } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeImageNode } from './decode-node.js';
import { FUZZ_GROUPS, fuzzCases, fuzzProblem } from './testdata/fuzz-cases.js';
import { pngChunkRanges, pngOf } from './testdata/craft.js';

const tally = { cases: 0, decoded: 0, refused: 0 };
afterAll(() => console.log(`image fuzz (Node): ${tally.cases} damaged files tried, ${tally.decoded} decoded, ${tally.refused} refused with a named reason`));

describe('damaged images never crash the Node decoder', () => {
  for (const g of FUZZ_GROUPS)
    it(`${g.label} (${g.n} cases)`, () => {
      const problems: string[] = [];
      for (const [name, bytes] of fuzzCases(g)) {
        tally.cases++;
        const t = performance.now();
        let outcome: Parameters<typeof fuzzProblem>[1];
        try {
          const img = decodeImageNode(name, bytes);
          outcome = { width: img.width, height: img.height, bytes: img.data.length };
          tally.decoded++;
        } catch (e) {
          outcome = { error: (e as Error)?.name ?? typeof e, message: String((e as Error)?.message) };
          if (process.env.FUZZ_DUMP) console.log('MSG', outcome.message);
          if (outcome.error === 'ImageDecodeError') tally.refused++;
        }
        const p = fuzzProblem(name, outcome, performance.now() - t);
        if (p) problems.push(p);
      }
      expect(problems.slice(0, 10)).toEqual([]);
    });

  it('crc32 of the crafted files is right (so the damage is where the case says)', () => {
    const b = pngOf(2, 2, new Uint8Array(2 * 7));
    for (const c of pngChunkRanges(b)) expect(new DataView(b.buffer).getUint32(c.end - 4)).toBe(crc32(b.subarray(c.start + 4, c.end - 4)));
  });
});
