// kohya folder names, captions paired by path, and the skip list, as the page and the CLI read a set.
import { describe, expect, it } from 'vitest';
import { captionOf, folderLine, folderSummary, kohyaFolder, mergeSkips, pairFiles, REASON, skipReason } from './dataset-files.js';
import { ImageDecodeError } from './images.js';

const f = (path: string, size = 10) => ({ path, size });

describe('kohya folder names', () => {
  it('read N_concept as N repeats of that folder, from the image’s own folder only', () => {
    expect(kohyaFolder('train/10_cat')).toEqual({ repeats: 10, concept: 'cat' });
    expect(kohyaFolder('5_sks dog')).toEqual({ repeats: 5, concept: 'sks dog' });
    expect(kohyaFolder('10_cat/extra')).toEqual({ repeats: null, concept: null });
    expect(kohyaFolder('')).toEqual({ repeats: null, concept: null });
    expect(kohyaFolder('cat_10')).toEqual({ repeats: null, concept: null });
  });
  it('read a year or 0 as part of a plain name, and say so', () => {
    expect(kohyaFolder('photos/2024_summer')).toMatchObject({ repeats: null, note: expect.stringContaining('photos/2024_summer: 2024 is not a repeat count') });
    expect(kohyaFolder('0_cat')).toMatchObject({ repeats: null, note: expect.stringContaining('1 to 1000') });
  });
});

describe('pairing by path', () => {
  const set = [
    f('train/10_cat/1.png'),
    f('train/10_cat/1.txt'),
    f('train/5_coffee/1.png'),
    f('train/5_coffee/1.txt'),
    f('train/5_coffee/2.jpg'),
    f('train/5_coffee/orphan.txt'),
    f('train/5_coffee/empty.png', 0),
    f('train/notes.pdf'),
    f('train/model.safetensors'),
    f('__MACOSX/train/._1.png'),
    f('train/.DS_Store'),
    f('train/'),
    f('loose.webp'),
  ];
  const r = pairFiles(set);
  it('keeps same-named images of different folders, each with its own folder’s caption', () => {
    expect(r.images.map((i) => [i.path, i.captionPath, i.repeats, i.concept])).toEqual([
      ['train/10_cat/1.png', 'train/10_cat/1.txt', 10, 'cat'],
      ['train/5_coffee/1.png', 'train/5_coffee/1.txt', 5, 'coffee'],
      ['train/5_coffee/2.jpg', null, 5, 'coffee'],
      ['loose.webp', null, null, null],
    ]);
  });
  it('names each left-out file once, with its reason; hidden files are left out unmentioned', () => {
    expect(r.skipped).toEqual([
      { path: 'train/5_coffee/empty.png', reason: REASON.empty },
      { path: 'train/notes.pdf', reason: REASON.notData },
      { path: 'train/model.safetensors', reason: REASON.checkpoint },
    ]);
    expect(r.orphanCaptions).toEqual(['train/5_coffee/orphan.txt']);
    expect(pairFiles([f('a.png'), f('a.png')]).images).toHaveLength(1);
  });
  it('calls an empty caption file no caption', () => {
    const e = pairFiles([f('a/1.png'), f('a/1.txt', 0)]);
    expect(e.images[0]!.captionPath).toBeNull();
    expect(e.skipped).toEqual([{ path: 'a/1.txt', reason: REASON.empty }]);
  });
  it('takes kohya’s .caption files, the .txt when both are there, and names latent caches', () => {
    const k = pairFiles([f('10_a/1.png'), f('10_a/1.caption'), f('10_a/2.png'), f('10_a/2.caption'), f('10_a/2.txt'), f('10_a/1.npz')]);
    expect(k.images.map((i) => i.captionPath)).toEqual(['10_a/1.caption', '10_a/2.txt']);
    expect(k.skipped).toEqual([
      { path: '10_a/2.caption', reason: REASON.secondCaption },
      { path: '10_a/1.npz', reason: REASON.latentCache },
    ]);
    expect(pairFiles([f('b.png'), f('b.txt'), f('b.caption')]).images[0]!.captionPath).toBe('b.txt');
  });
  it('notes folder names not read as repeats, once per folder', () => {
    expect(pairFiles([f('2024_trip/a.png'), f('2024_trip/b.png')]).notes).toHaveLength(1);
  });
});

describe('captions and skip wording', () => {
  it('gives an uncaptioned image its folder’s concept (as kohya does), else nothing, with a note', () => {
    expect(captionOf({ concept: 'cat' }, ' a cat, sitting ')).toEqual({ caption: 'a cat, sitting' });
    expect(captionOf({ concept: 'cat' }, null)).toEqual({ caption: 'cat', note: expect.stringContaining('"cat"') });
    expect(captionOf({ concept: null }, '  ')).toEqual({ caption: '', note: expect.stringContaining('trigger word alone') });
  });
  it('takes the file name and "skipped" out of a decoder’s message, so a skip reads `path: reason` once', () => {
    expect(skipReason('a/b (1).png', new ImageDecodeError('a/b (1).png', 'not a PNG, JPEG or WebP image'))).toBe('not a PNG, JPEG or WebP image');
    expect(skipReason('x.png', new Error('out of memory'))).toBe('out of memory');
  });
  it('merges skip lists to one entry a path, dropping paths now in the dataset', () => {
    const a = [{ path: 'n.pdf', reason: 'x' }, { path: '1.txt', reason: REASON.orphan }];
    expect(mergeSkips([a, [{ path: 'n.pdf', reason: 'y' }]], new Set(['1.txt']))).toEqual([{ path: 'n.pdf', reason: 'y' }]);
  });
});

describe('folder summary', () => {
  it('counts images × repeats per folder; images outside N_ folders take the setting', () => {
    const s = folderSummary([{ name: 't/10_cat/1.png', repeats: 10 }, { name: 't/10_cat/2.png', repeats: 10 }, { name: 't/5_coffee/1.png', repeats: 5 }, { name: 'x.png' }], 2);
    expect(s.map(folderLine)).toEqual(['10_cat: 2 images × 10 repeats = 20 per epoch', '5_coffee: 1 image × 5 repeats = 5 per epoch', 'dataset: 1 image × 2 repeats (the Repeats setting) = 2 per epoch']);
  });
});
