// The wd tagger path on ONNX Runtime (wasm) with a tagger-shaped model built here: scores against a float64 reference, threshold, ratings dropped, trigger first, preprocessing against PIL, and wrong or missing files refused by name.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type * as Ort from 'onnxruntime-web';
import { chooseTags, captionTag, parseSelectedTags, prepareTaggerInput, taggedCaption, TaggerError } from './tagger.js';
import { openTagger, type Tagger } from './tagger-session.js';
import { taggerFromHub } from './tagger-hub.js';
import { fixtureHub, fixtureScores, fixtureTaggerModel, fixtureTagsCsv, FIXTURE_TAGS } from './tagger-fixture.js';
import type { RgbaImage } from './images.js';

let ort: typeof Ort;
const WASM = [{ name: 'wasm' as const }];

/** A solid-colour RGBA image. */
function solid(width: number, height: number, rgb: [number, number, number]): RgbaImage {
  const data = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) data.set([...rgb, 255], i * 4);
  return { width, height, data };
}

/** The pattern scripts/tagger_prep.py draws (same formula), so both sides prepare the same pixels. */
function pattern(width: number, height: number): RgbaImage {
  const data = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) data.set([(x * 37 + y * 11) % 256, (x * x + 3 * y) % 256, (((255 - x * 5 - y * 7) % 256) + 256) % 256, (x + y) % 5 === 0 ? (x * 23) % 256 : 255], (y * width + x) * 4);
  return { width, height, data };
}

const open = (model: Uint8Array, tags = fixtureTagsCsv()) => openTagger(ort, { model, tags, from: 'test/tagger' }, WASM);

beforeAll(async () => {
  // Node resolves the package's "node" export (CPU/wasm EP); single-threaded, light on the 2 CI cores.
  const specifier = 'onnxruntime-web';
  ort = (await import(/* @vite-ignore */ specifier)) as typeof Ort;
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
});

describe('wd tagger on ONNX Runtime', () => {
  let tagger: Tagger;
  beforeAll(async () => {
    tagger = await open(fixtureTaggerModel());
  });

  it('reads the input size from the model and scores as the float64 reference does', async () => {
    expect(tagger.size).toBe(448);
    expect(tagger.provider).toBe('wasm');
    for (const img of [solid(448, 448, [20, 40, 230]), solid(300, 200, [230, 30, 20]), pattern(61, 97)]) {
      const ref = fixtureScores(prepareTaggerInput(img, 448));
      const got = await tagger.score(img);
      expect(got.length).toBe(FIXTURE_TAGS.length);
      // ORT sums 448² values of up to 255 in f32 (the mean off by ~1e-4 relative; the logits weigh it by up
      // to 10): measured at most 1.4e-4 in a score. A layout or order mistake moves scores by 0.1 or more.
      for (let i = 0; i < ref.length; i++) expect(Math.abs(got[i]! - ref[i]!)).toBeLessThan(5e-4);
    }
  });

  it('keeps tags above the threshold, drops ratings, puts the trigger word first', async () => {
    const scores = await tagger.score(solid(448, 448, [0, 0, 255]));
    // 'general' (a rating) scores 0.98 and is still left out.
    expect(scores[0]).toBeGreaterThan(0.9);
    expect(taggedCaption(chooseTags(scores, tagger.tags, { threshold: 0.35 }), 'sks')).toBe('sks, blue sky, ^_^, hatsune miku, long hair');
    expect(taggedCaption(chooseTags(scores, tagger.tags, { threshold: 0.5, characterThreshold: 0.85 }), 'sks dog, ^_^')).toBe('sks dog, ^_^, blue sky');
    expect(taggedCaption(chooseTags(scores, tagger.tags, { threshold: 0.999 }), '')).toBe('blue sky');
  });

  it('reads channels in BGR order: a red image is tagged red, a blue one blue', async () => {
    const red = chooseTags(await tagger.score(solid(64, 32, [255, 0, 0])), tagger.tags, { threshold: 0.6 }).map((t) => t.tag);
    expect(red).toContain('red theme');
    expect(red).not.toContain('blue sky');
  });

  it('runs the v2 names (input_1:0 → predictions_sigmoid) and a fixed batch of 1 as well', async () => {
    const t = await open(fixtureTaggerModel({ layout: 'v2', batch: 1, size: 64 }));
    expect(t.size).toBe(64);
    const img = solid(10, 10, [0, 200, 0]);
    const ref = fixtureScores(prepareTaggerInput(img, 64));
    const got = await t.score(img);
    ref.forEach((r, i) => expect(Math.abs(got[i]! - r)).toBeLessThan(1e-5));
    await t.release();
  });

  it('takes 448² when the model leaves height and width free', async () => {
    const t = await open(fixtureTaggerModel({ freeSide: true }));
    expect(t.size).toBe(448);
    expect(chooseTags(await t.score(solid(20, 30, [0, 0, 255])), t.tags, { threshold: 0.9 }).map((x) => x.tag)).toEqual(['blue sky']);
    await t.release();
  });
});

describe('wrong or missing tagger files', () => {
  const rejects = async (p: Promise<unknown>, ...parts: RegExp[]) => {
    const e = await p.then(() => null, (x: unknown) => x as Error);
    expect(e).toBeInstanceOf(TaggerError);
    for (const re of parts) expect(e!.message).toMatch(re);
  };

  it('refuses an empty model, bytes that are not ONNX, and an ONNX model of another layout', async () => {
    await rejects(open(new Uint8Array(0)), /test\/tagger\/model\.onnx is empty/, /download it again/);
    await rejects(open(Uint8Array.from({ length: 500 }, (_, i) => (i * 7919) % 256)), /model\.onnx could not be opened by ONNX Runtime/, /damaged or not an ONNX model/);
    await rejects(open(fixtureTaggerModel({ channelsFirst: true, size: 32 })), /input input is float32 \[batch, 3, 32, 32\]/, /not a WD14-style tagger/);
  });

  it('refuses a tag list that does not go with the model, or is not a tag list', async () => {
    await rejects(open(fixtureTaggerModel({ scores: 7 })), /gives 7 scores per image but selected_tags\.csv lists 11 tags/, /same repository/);
    await rejects(open(fixtureTaggerModel(), 'id;tag\n1;cat\n'), /first line should name the columns tag_id,name,category,count/);
    await rejects(open(fixtureTaggerModel(), 'tag_id,name,category,count\n'), /lists no tags/);
  });

  it('names a file the hub repository lacks, and reads both files from the cache the second time', async () => {
    const files: Record<string, Uint8Array | string> = { 'o/t/selected_tags.csv': fixtureTagsCsv(), 'o/t/model.onnx': fixtureTaggerModel({ size: 32 }), 'o/half/selected_tags.csv': fixtureTagsCsv() };
    const { endpoint, asked, options: hub } = fixtureHub(files);
    const o = { endpoint };
    await rejects(taggerFromHub({ repo: 'o/none', ...o }, hub), /o\/none has no selected_tags\.csv/, /WD14 tagger repository holds model\.onnx and selected_tags\.csv/);
    await rejects(taggerFromHub({ repo: 'o/half', ...o }, hub), /o\/half has no model\.onnx/);
    const first = await taggerFromHub({ repo: 'o/t', ...o }, hub);
    expect(first.report.downloadedFiles).toBe(2);
    asked.length = 0;
    const again = await taggerFromHub({ repo: 'o/t', ...o }, hub);
    expect(asked).toEqual([]);
    expect(again.report.cachedFiles).toBe(2);
    const t = await openTagger(ort, again, WASM);
    expect(t.size).toBe(32);
    await t.release();
  });
});

describe('tag list and preprocessing', () => {
  it('parses selected_tags.csv with quoted names, and writes tags as captions do', () => {
    const tags = parseSelectedTags('\uFEFFtag_id,name,category,count\r\n1,"a,b",0,5\r\n2,long_hair,0,3\r\n3,^_^,0,2\r\n');
    expect(tags).toEqual([{ name: 'a,b', category: 0 }, { name: 'long_hair', category: 0 }, { name: '^_^', category: 0 }]);
    expect(tags.map((t) => captionTag(t.name))).toEqual(['a b', 'long hair', '^_^']);
  });

  it('pads, flattens alpha and resizes as PIL does (scripts/tagger_prep.py)', () => {
    const golden = JSON.parse(readFileSync(new URL('./testdata/tagger-prep.json', import.meta.url), 'utf8')) as { cases: { width: number; height: number; size: number; bgr: number[] }[] };
    for (const c of golden.cases) {
      const got = prepareTaggerInput(pattern(c.width, c.height), c.size);
      expect(got.length).toBe(c.bgr.length);
      let worst = 0;
      let sum = 0;
      for (let i = 0; i < got.length; i++) {
        const d = Math.abs(got[i]! - c.bgr[i]!);
        worst = Math.max(worst, d);
        sum += d;
      }
      // PIL works in 22-bit fixed point and rounds its alpha blend its own way: off by one byte at most, rarely.
      expect(worst, `${c.width}x${c.height} → ${c.size}`).toBeLessThanOrEqual(1);
      expect(sum / got.length).toBeLessThan(0.05);
    }
  });
});
