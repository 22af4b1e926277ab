// Caption processing: tag splitting, the trigger word, shuffling with kept tokens, caption and tag dropout.
import { describe, expect, it } from 'vitest';
import { processCaption, splitTags, tagFrequency, withTrigger, type CaptionOptions } from './captions.js';
import { Rng } from './rng.js';

const plain: CaptionOptions = { shuffle: false, keepTokens: 0, captionDropout: 0, tagDropout: 0, triggerWord: '' };
const caption = 'sks cat, sitting, red sofa, window, sunlight, indoors';

describe('tags', () => {
  it('split on commas, trimmed, empty tags dropped', () => {
    expect(splitTags(' a , b,,c ,  ')).toEqual(['a', 'b', 'c']);
    expect(processCaption(' a , b,,c ', plain, new Rng(0))).toBe('a, b, c');
  });
});

describe('trigger word', () => {
  it('is prepended when missing, moved to the front when present, and left alone when first', () => {
    expect(withTrigger('cat, sofa', 'sks')).toBe('sks, cat, sofa');
    expect(withTrigger('cat, SKS, sofa', 'sks')).toBe('sks, cat, sofa');
    expect(withTrigger('sks, cat', 'sks')).toBe('sks, cat');
    expect(withTrigger('cat', '')).toBe('cat');
    expect(withTrigger('', 'sks')).toBe('sks');
    expect(withTrigger('sks cat, sofa', 'sks')).toBe('sks, sks cat, sofa'); // a tag containing the word is another tag
  });
  it('is always kept in place, even with keepTokens 0 or a multi-tag trigger', () => {
    for (let s = 0; s < 20; s++) {
      expect(processCaption('a, b, c, d', { ...plain, shuffle: true, triggerWord: 'sks' }, new Rng(s)).startsWith('sks, ')).toBe(true);
      expect(processCaption('a, b, c, d', { ...plain, shuffle: true, triggerWord: 'sks, style' }, new Rng(s)).startsWith('sks, style, ')).toBe(true);
    }
  });
});

describe('shuffle and keep tokens', () => {
  it('keep the first keepTokens tags in place and shuffle the rest, reproducibly', () => {
    const o = { ...plain, shuffle: true, keepTokens: 1 };
    const seen = new Set<string>();
    for (let s = 0; s < 30; s++) {
      const out = processCaption(caption, o, new Rng(s));
      expect(out.startsWith('sks cat, ')).toBe(true);
      expect(splitTags(out).sort()).toEqual(splitTags(caption).sort());
      expect(processCaption(caption, o, new Rng(s))).toBe(out);
      seen.add(out);
    }
    expect(seen.size).toBeGreaterThan(20);
    const two = processCaption(caption, { ...o, keepTokens: 2 }, new Rng(3));
    expect(two.startsWith('sks cat, sitting, ')).toBe(true);
  });
  it('without shuffle the caption is unchanged', () => {
    expect(processCaption(caption, plain, new Rng(1))).toBe(caption);
  });
  it('keepTokens beyond the tag count keeps everything', () => {
    expect(processCaption('a, b', { ...plain, shuffle: true, keepTokens: 5 }, new Rng(1))).toBe('a, b');
  });
});

describe('dropout', () => {
  it('whole-caption dropout returns an empty caption at the set rate', () => {
    const r = new Rng(4);
    const n = 4000;
    const empty = Array.from({ length: n }, () => processCaption(caption, { ...plain, captionDropout: 0.25, triggerWord: 'sks' }, r)).filter((c) => c === '').length;
    expect(empty / n).toBeCloseTo(0.25, 1);
    expect(processCaption(caption, { ...plain, captionDropout: 1 }, new Rng(0))).toBe('');
  });
  it('tag dropout drops non-kept tags at the set rate, never kept ones', () => {
    const r = new Rng(5);
    const o = { ...plain, keepTokens: 1, tagDropout: 0.3 };
    let kept = 0;
    const n = 2000;
    for (let i = 0; i < n; i++) {
      const tags = splitTags(processCaption(caption, o, r));
      expect(tags[0]).toBe('sks cat');
      kept += tags.length - 1;
    }
    expect(kept / (n * 5)).toBeCloseTo(0.7, 1);
    expect(processCaption(caption, { ...o, tagDropout: 1 }, new Rng(0))).toBe('sks cat');
  });
});

describe('tagFrequency', () => {
  it('counts every occurrence, lower-cased, as kohya writes ss_tag_frequency', () => {
    expect(tagFrequency(['sks, cat, Sofa', 'sks,cat', 'SOFA, , window'])).toEqual({ sks: 2, cat: 2, sofa: 2, window: 1 });
    expect(tagFrequency([])).toEqual({});
  });
  it('is safe for tag names that are object keys', () => {
    const f = tagFrequency(['constructor, __proto__, toString', 'constructor']);
    expect(f.constructor).toBe(2);
    expect(Object.getOwnPropertyDescriptor(f, '__proto__')?.value).toBe(1);
    expect(JSON.parse(JSON.stringify(f))).toEqual({ constructor: 2, ['__proto__']: 1, tostring: 1 });
  });
});
