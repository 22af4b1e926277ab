// The CLI's image folder as kohya users have it: N_concept subfolders, same-named images, a dangling link, an empty file.
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encode } from 'fast-png';
import { describe, expect, it } from 'vitest';
import { readImages } from './read-images.js';

/** A 4x4 PNG of one colour. */
const png = (r: number, g: number, b: number) => encode({ width: 4, height: 4, channels: 3, data: new Uint8Array(48).map((_, i) => [r, g, b][i % 3]!) });

describe('readImages', () => {
  it('walks subfolders, pairs captions by path, reads N_ repeats and names every skipped entry once', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-images-'));
    const put = (p: string, data: string | Uint8Array) => (mkdirSync(join(dir, p, '..'), { recursive: true }), writeFileSync(join(dir, p), data));
    put('10_cat/1.png', png(255, 0, 0));
    put('10_cat/1.txt', 'a red cat\n');
    put('5_coffee/1.png', png(0, 255, 0));
    put('5_coffee/1.txt', 'green coffee');
    put('5_coffee/2.png', png(0, 0, 255));
    put('5_coffee/orphan.txt', 'no image');
    put('loose/deeper/3.png', png(9, 9, 9));
    put('empty.png', new Uint8Array(0));
    put('notes.md', '# notes');
    put('.cache/x.png', png(1, 1, 1));
    symlinkSync(join(dir, 'nowhere.png'), join(dir, 'gone.png'));
    symlinkSync(dir, join(dir, 'loose/loop')); // a link back up: walked once
    const { items, messages } = readImages(dir, 2);
    expect(items.map((i) => [i.name, i.caption, i.repeats])).toEqual([
      ['10_cat/1.png', 'a red cat', 10],
      ['5_coffee/1.png', 'green coffee', 5],
      ['5_coffee/2.png', 'coffee', 5], // no caption: its folder's concept, as kohya does
      ['loose/deeper/3.png', '', undefined],
    ]);
    expect(items[0]!.image.data[0]).toBe(255);
    expect(items[1]!.image.data[1]).toBe(255);
    expect(messages).toEqual([
      'skipped gone.png: unreadable: it does not exist (a link to a file that is gone?)',
      'skipped empty.png: empty file (0 bytes)',
      'skipped notes.md: not an image (PNG, JPEG or WebP) or a caption (.txt, .caption)',
      'skipped 5_coffee/orphan.txt: a caption without its image (no PNG, JPEG or WebP of the same name in its folder)',
      expect.stringMatching(/^no caption file for 2 images: 5_coffee\/2.png \(captioned "coffee", its folder's concept\), loose\/deeper\/3.png \(trained on the trigger word alone\)$/),
      '10_cat: 1 image × 10 repeats = 10 per epoch',
      '5_coffee: 2 images × 5 repeats = 10 per epoch',
      'deeper: 1 image × 2 repeats (the Repeats setting) = 2 per epoch',
    ]);
  });
});
