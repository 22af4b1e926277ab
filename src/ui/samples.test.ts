// The page's "Use the sample photos" button fetches what public/samples/manifest.json lists: it must
// list every bundled photo and caption, and only files that exist.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const dir = new URL('../../public/samples/', import.meta.url);

describe('bundled samples manifest', () => {
  it('lists exactly the photos and captions in public/samples, each photo with its caption', () => {
    const { files } = JSON.parse(readFileSync(new URL('manifest.json', dir), 'utf8')) as { files: string[] };
    const onDisk = readdirSync(dir).filter((n) => /\.(png|jpe?g|webp|txt)$/i.test(n)).sort();
    expect([...files].sort()).toEqual(onDisk);
    const photos = files.filter((n) => !n.endsWith('.txt'));
    expect(photos.length).toBeGreaterThanOrEqual(5);
    for (const p of photos) expect(files).toContain(p.replace(/\.[^.]+$/, '.txt'));
  });
});
