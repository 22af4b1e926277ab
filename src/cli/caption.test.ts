// `lorasmith caption` as a user runs it: a separate process tagging a folder with a tagger folder (the tagger-shaped test model) on ORT's wasm EP; existing captions kept unless --overwrite; missing or wrong tagger files end in one error line.
// (The default WebGPU EP on Dawn works too, checked by hand: loading ORT's WebGPU build in Node took 195 s on the loaded CI cores, so the
// WebGPU EP is tested in the page instead, by e2e/caption.spec.ts.)
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encode as encodePng } from 'fast-png';
import { describe, expect, it } from 'vitest';
import { fixtureTaggerModel, fixtureTagsCsv } from '../training/tagger-fixture.js';
import { cli as lorasmith } from './testing.js';

/** `lorasmith caption` with these arguments, run to its end. */
const cli = (args: string[]) => lorasmith(['caption', ...args]);

const png = (rgb: [number, number, number]) => {
  const data = new Uint8Array(40 * 30 * 3);
  for (let i = 0; i < 40 * 30; i++) data.set(rgb, i * 3);
  return encodePng({ width: 40, height: 30, data, channels: 3 });
};

/** An image folder (a kohya subfolder, one image already captioned) and a tagger folder. */
function setup(): { images: string; tagger: string } {
  const dir = mkdtempSync(join(tmpdir(), 'caption-'));
  const images = join(dir, 'train');
  mkdirSync(join(images, '5_thing'), { recursive: true });
  writeFileSync(join(images, 'blue.png'), png([0, 0, 255]));
  writeFileSync(join(images, '5_thing/red.png'), png([255, 0, 0]));
  writeFileSync(join(images, '5_thing/red.txt'), 'my own caption\n');
  const tagger = join(dir, 'tagger');
  mkdirSync(tagger);
  writeFileSync(join(tagger, 'model.onnx'), fixtureTaggerModel({ size: 64 }));
  writeFileSync(join(tagger, 'selected_tags.csv'), fixtureTagsCsv());
  return { images, tagger };
}

describe('lorasmith caption', () => {
  it('tags with the trigger first, keeps an existing caption, then replaces it with --overwrite', async () => {
    const { images, tagger } = setup();
    const opts = ['--images', images, '--tagger', tagger, '--trigger', 'sks', '--threshold', '0.5', '--character-threshold', '0.85', '--provider', 'wasm'];
    const r = await cli(opts);
    expect(r.out).toContain('64x64 input, on wasm');
    expect(r.code).toBe(0);
    expect(r.out).toContain('1 of 2 images already have a caption file and keep it');
    expect(readFileSync(join(images, 'blue.txt'), 'utf8')).toBe('sks, blue sky, ^_^\n');
    expect(readFileSync(join(images, '5_thing/red.txt'), 'utf8')).toBe('my own caption\n');
    const w = await cli([...opts, '--overwrite']);
    expect(w.code).toBe(0);
    expect(readFileSync(join(images, '5_thing/red.txt'), 'utf8')).toBe('sks, red theme, ^_^\n');
  }, 240_000);

  it('ends with one error line for a missing or wrong tagger file and a bad threshold', async () => {
    const { images, tagger } = setup();
    writeFileSync(join(tagger, 'model.onnx'), new Uint8Array(300).fill(7));
    const wrong = await cli(['--images', images, '--tagger', tagger, '--provider', 'wasm']);
    expect([wrong.code, wrong.out]).toEqual([1, expect.stringMatching(/error: .*tagger\/model\.onnx could not be opened by ONNX Runtime .*damaged or not an ONNX model/)]);
    const noTags = join(tagger, '..');
    const missing = await cli(['--images', images, '--tagger', noTags, '--provider', 'wasm']);
    expect([missing.code, missing.out]).toEqual([1, expect.stringMatching(/error: .* has no model\.onnx: a tagger folder holds model\.onnx and selected_tags\.csv/)]);
    const bad = await cli(['--images', images, '--tagger', tagger, '--threshold', '1.5']);
    expect([bad.code, bad.out]).toEqual([1, expect.stringMatching(/error: --threshold must be a number above 0 and at most 1/)]);
  }, 240_000);
});
