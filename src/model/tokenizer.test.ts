// The CLIP tokenizer on the real vocabulary: special ids, normalisation, BOS/EOS padding and truncation, and errors for bad vocabularies.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ClipTokenizer } from './tokenizer.js';

// The real CLIP vocabulary ships with the app (public/clip-tokenizer/), so these tests always run.
const dir = fileURLToPath(new URL('../../public/clip-tokenizer/', import.meta.url));

const BOS = 49406;
const EOS = 49407;

describe('CLIP tokenizer on the real vocabulary', () => {
  const tok = ClipTokenizer.fromFiles(readFileSync(`${dir}vocab.json`, 'utf8'), readFileSync(`${dir}merges.txt`, 'utf8'));

  it('is the full CLIP vocabulary (49,408 ids), not the tiny demo one', () => {
    expect(Object.keys(JSON.parse(readFileSync(`${dir}vocab.json`, 'utf8'))).length).toBe(49408);
  });

  // Ids from the original CLIP tokenizer (the vocabulary's README).
  const known: [string, number[]][] = [
    ['a photo of a cat, masterpiece', [320, 1125, 539, 320, 2368, 267, 12066]],
    ['Photo of TOK person, 4k, highly-detailed!', [1125, 539, 27010, 2533, 267, 275, 330, 267, 5302, 268, 12609, 256]],
    ["blue_sky, 2girls, (smile:1.1), it's sunny", [1746, 318, 2390, 267, 273, 1917, 267, 263, 3490, 281, 272, 269, 272, 2361, 585, 568, 5438]],
    ['an astronaut riding a horse on mars', [550, 18376, 6765, 320, 4558, 525, 7496]],
  ];
  for (const [text, ids] of known) it(`"${text}"`, () => expect(tok.encode(text)).toEqual(ids));

  // Ids from an independent Python implementation of CLIP's algorithm (regex split, byte map,
  // rank-ordered merges), written for this check; it agreed on the four cases above and on
  // 3,000 random strings.
  const crossChecked: [string, number[]][] = [
    ["THEY'RE here, you'll see", [889, 982, 763, 267, 592, 1342, 862]],
    ['café naïve résumé', [15304, 1097, 35689, 563, 29106, 7054, 4166]],
    ['emoji 😀🎉 ok', [16327, 12832, 3986, 2481]],
    ['a<|endoftext|>b', [320, EOS, 321]],
    ['(((masterpiece))), <lora:foo:0.8>', [33287, 12066, 13720, 2361, 283, 2179, 320, 281, 23435, 281, 271, 269, 279, 285]],
  ];
  for (const [text, ids] of crossChecked) it(`"${text}" (cross-checked)`, () => expect(tok.encode(text)).toEqual(ids));

  it('has CLIP special ids', () => {
    expect([tok.bos, tok.eos]).toEqual([BOS, EOS]);
  });

  it('collapses whitespace and lower-cases, as CLIP does', () => {
    const ids = tok.encode('a photo of a cat, masterpiece');
    expect(tok.encode('  A\tPHOTO   of a\n cat ,masterpiece  ')).toEqual(ids);
    expect(tok.encode('')).toEqual([]);
    expect(tok.encode(' \n ')).toEqual([]);
  });

  it('adds BOS and EOS and pads with EOS to 77', () => {
    const ids = tok.encodeForModel('a photo of a cat');
    expect(ids).toBeInstanceOf(Int32Array);
    expect(ids.length).toBe(77);
    expect([...ids.slice(0, 7)]).toEqual([BOS, 320, 1125, 539, 320, 2368, EOS]);
    expect(ids.slice(7).every((i) => i === EOS)).toBe(true);
    expect([...tok.encodeForModel('')]).toEqual([BOS, ...Array(76).fill(EOS)]);
  });

  it('truncates long captions to 75 tokens between BOS and EOS', () => {
    const long = Array(100).fill('cat').join(' ');
    const ids = tok.encodeForModel(long);
    expect(ids.length).toBe(77);
    expect(ids[0]).toBe(BOS);
    expect(ids.slice(1, 76).every((i) => i === 2368)).toBe(true);
    expect(ids[76]).toBe(EOS);
    expect(tok.tokenLength(long)).toBe(100);
    const exactly75 = Array(75).fill('cat').join(' ');
    expect([...tok.encodeForModel(exactly75)]).toEqual([BOS, ...Array(75).fill(2368), EOS]);
  });

  it('honours another maxLength', () => {
    expect([...tok.encodeForModel('a photo of a cat', 4)]).toEqual([BOS, 320, 1125, EOS]);
    expect([...tok.encodeForModel('a', 5)]).toEqual([BOS, 320, EOS, EOS, EOS]);
    expect(() => tok.encodeForModel('a', 1)).toThrow(/no room for BOS and EOS/);
  });
});

describe('CLIP tokenizer errors', () => {
  it('names a vocabulary without CLIP specials', () => {
    expect(() => ClipTokenizer.fromFiles('{"a</w>": 0}', '')).toThrow('tokenizer vocab.json lacks <|startoftext|> or <|endoftext|>: not a CLIP vocabulary');
  });
  it('names a vocab.json that is not JSON', () => {
    expect(() => ClipTokenizer.fromFiles('<html>', '')).toThrow(/tokenizer vocab\.json is not valid JSON/);
  });
});
