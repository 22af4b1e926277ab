// Caption export: one .txt per image at the image's path in a zip, UTF-8 text as written, same-stem images refused by name.
import { strFromU8, unzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { captionPath, captionsZip } from './caption-export.js';

describe('captionsZip', () => {
  it('puts each caption at its image path with .txt, folders kept, text as UTF-8', () => {
    const zip = captionsZip([
      { name: 'train/10_cat/1.png', caption: 'sks cat, sitting ' },
      { name: 'train/5_coffee/1.png', caption: 'café, ^_^' },
      { name: 'dog.webp', caption: '' },
    ]);
    const files = unzipSync(zip);
    expect(Object.keys(files).sort()).toEqual(['dog.txt', 'train/10_cat/1.txt', 'train/5_coffee/1.txt']);
    expect(strFromU8(files['train/10_cat/1.txt']!)).toBe('sks cat, sitting\n');
    expect(strFromU8(files['train/5_coffee/1.txt']!)).toBe('café, ^_^\n');
    expect(captionPath('a.b/c.jpeg')).toBe('a.b/c.txt');
  });

  it('refuses two images that would share one caption file', () => {
    expect(() => captionsZip([{ name: 'x/a.png', caption: '1' }, { name: 'x/a.jpg', caption: '2' }])).toThrow(/x\/a\.png and x\/a\.jpg would both be captioned by x\/a\.txt/);
  });
});
