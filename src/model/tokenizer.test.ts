import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClipTokenizer } from './tokenizer.js';

const dir = resolve(__dirname, '../../../shared/data/clip-tokenizer');
const have = existsSync(`${dir}/vocab.json`);

describe.skipIf(!have)('CLIP tokenizer on the real vocabulary (../shared/data/clip-tokenizer)', () => {
  const tok = have ? ClipTokenizer.fromFiles(readFileSync(`${dir}/vocab.json`, 'utf8'), readFileSync(`${dir}/merges.txt`, 'utf8')) : null!;
  const known: [string, number[]][] = [
    ['a photo of a cat, masterpiece', [320, 1125, 539, 320, 2368, 267, 12066]],
    ['Photo of TOK person, 4k, highly-detailed!', [1125, 539, 27010, 2533, 267, 275, 330, 267, 5302, 268, 12609, 256]],
    ['blue_sky, 2girls, (smile:1.1), it\'s sunny', [1746, 318, 2390, 267, 273, 1917, 267, 263, 3490, 281, 272, 269, 272, 2361, 585, 568, 5438]],
    ['an astronaut riding a horse on mars', [550, 18376, 6765, 320, 4558, 525, 7496]],
  ];
  for (const [text, ids] of known) it(`"${text}"`, () => expect(tok.encode(text)).toEqual(ids));

  it('adds BOS/EOS and pads with EOS to 77', () => {
    const ids = tok.encodeForModel('a photo of a cat');
    expect(ids.length).toBe(77);
    expect(ids.slice(0, 7)).toEqual([49406, 320, 1125, 539, 320, 2368, 49407]);
    expect(ids.slice(7).every((i) => i === 49407)).toBe(true);
  });

  it('truncates long captions to 75 tokens plus BOS/EOS', () => {
    const ids = tok.encodeForModel(Array(100).fill('cat').join(' '));
    expect(ids.length).toBe(77);
    expect(ids[0]).toBe(49406);
    expect(ids[76]).toBe(49407);
    expect(ids.slice(1, 76).every((i) => i === 2368)).toBe(true);
    expect(tok.tokenLength(Array(100).fill('cat').join(' '))).toBe(100);
  });
});

describe('CLIP tokenizer errors', () => {
  it('names a vocabulary without CLIP specials', () => {
    expect(() => ClipTokenizer.fromFiles('{"a</w>": 0}', '')).toThrow(/<\|startoftext\|>/);
  });
});
