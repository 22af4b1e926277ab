// The page's "Use the sample photos" button fetches what public/samples/manifest.json lists: it must
// list every bundled photo and caption, and only files that exist, each photo paired with its caption
// as the page pairs a dropped set (training/dataset-files.ts).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { pairFiles } from '../protocol/index.js';

const dir = new URL('../../public/samples/', import.meta.url);

describe('bundled samples manifest', () => {
  it('lists exactly the photos and captions in public/samples, each photo with its caption', () => {
    const { files } = JSON.parse(readFileSync(new URL('manifest.json', dir), 'utf8')) as { files: string[] };
    const onDisk = readdirSync(dir).filter((n) => /\.(png|jpe?g|webp|txt)$/i.test(n)).sort();
    expect([...files].sort()).toEqual(onDisk);
    const set = pairFiles(files.map((path) => ({ path, size: statSync(new URL(path, dir)).size })));
    expect(set.images.length).toBeGreaterThanOrEqual(5);
    expect(set.images.filter((i) => !i.captionPath)).toEqual([]);
    expect([set.skipped, set.orphanCaptions]).toEqual([[], []]);
  });
});
