// decode-browser.ts in headless Chromium against decode-node.ts on the same files: the PNG test files of every
// colour type (palettes, tRNS, 1-16 bits, Adam7), the samples and the WebPs decode to the same pixels, and
// bombs, zero sizes and a missing PLTE are refused in both; the damaged files of images-fuzz.test.ts too. (A Node test that drives Chromium itself: the
// browser test project covers src/engine only.)
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeImageNode } from './decode-node.js';
import { ImageDecodeError } from './images.js';
import { chunk, concat, ihdr, png, pngChunkRanges, zerosZlib } from './testdata/craft.js';
import { FUZZ_GROUPS, fuzzCases, fuzzProblem } from './testdata/fuzz-cases.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const testdataDir = new URL('./testdata/', import.meta.url);
const samplesDir = new URL('../../public/samples/', import.meta.url);
const read = (dir: URL, name: string) => new Uint8Array(readFileSync(new URL(name, dir)));

type Decoded = { width: number; height: number; bytes: number; data: Uint8Array } | { error: string; name: string };

let browser: Browser;
let page: Page;

beforeAll(async () => {
  // decode-browser.ts and what it imports, bundled as a script that sets window.D.
  const out = await build({
    configFile: false,
    logLevel: 'silent',
    build: { write: false, minify: false, lib: { entry: new URL('./decode-browser.ts', import.meta.url).pathname, formats: ['iife'], name: 'D' } },
  });
  const result = (Array.isArray(out) ? out[0] : out) as { output: { type: string; code?: string }[] };
  const code = result.output.find((o) => o.type === 'chunk')!.code!;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu-sandbox'] });
  page = await browser.newPage();
  await page.addScriptTag({ content: code });
});
afterAll(async () => browser?.close());

/** Decode in the page; `pixels: false` brings back only the size (the fuzz cases, some of them 8 megapixels). */
async function inBrowser(name: string, bytes: Uint8Array, pixels = true): Promise<Decoded> {
  const r = await page.evaluate(
    async ({ n, b64, pixels }) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      try {
        const img = await (window as unknown as { D: { decodeImageBrowser: (n: string, b: ArrayBuffer) => Promise<{ width: number; height: number; data: Uint8ClampedArray }> } }).D.decodeImageBrowser(n, bytes.buffer);
        let s = '';
        for (let i = 0; pixels && i < img.data.length; i += 8192) s += String.fromCharCode(...img.data.subarray(i, i + 8192));
        return { width: img.width, height: img.height, bytes: img.data.length, data: btoa(s) } as { width?: number; height?: number; bytes?: number; data?: string; error?: string; name?: string };
      } catch (e) {
        return { error: (e as Error).message, name: (e as Error).name };
      }
    },
    { n: name, b64: Buffer.from(bytes).toString('base64'), pixels },
  );
  return r.data !== undefined ? { width: r.width!, height: r.height!, bytes: r.bytes!, data: new Uint8Array(Buffer.from(r.data, 'base64')) } : { error: r.error!, name: r.name! };
}

/** Largest difference between the two decodes: alpha everywhere, colour where the pixel is visible (the browser premultiplies). */
function maxDiff(node: Uint8ClampedArray | Uint8Array, web: Uint8Array): { alpha: number; colour: number; meanColour: number } {
  let alpha = 0;
  let colour = 0;
  let sum = 0;
  let n = 0;
  for (let i = 0; i < node.length; i += 4) {
    alpha = Math.max(alpha, Math.abs(node[i + 3]! - web[i + 3]!));
    const a = node[i + 3]!;
    if (a === 0) continue;
    for (let c = 0; c < 3; c++) {
      // Premultiplied storage loses up to 255/a per channel.
      const d = Math.max(0, Math.abs(node[i + c]! - web[i + c]!) - (a === 255 ? 0 : Math.ceil(255 / a)));
      colour = Math.max(colour, d);
      sum += d;
      n++;
    }
  }
  return { alpha, colour, meanColour: sum / Math.max(1, n) };
}

describe.skipIf(!existsSync(CHROMIUM))('decode-browser (Chromium) agrees with decode-node', () => {
  it('the PNG test files (palettes, tRNS, 1 to 16 bits, Adam7) and the lossless WebP decode to the same pixels', async () => {
    const names = readdirSync(testdataDir).filter((n) => n.endsWith('.png') || n === 'halves-lossless.webp');
    expect(names.length).toBeGreaterThanOrEqual(15);
    for (const name of names) {
      const node = decodeImageNode(name, read(testdataDir, name));
      const web = await inBrowser(name, read(testdataDir, name));
      expect(web, name).toMatchObject({ width: node.width, height: node.height });
      // 16-bit to 8-bit: Chromium may round where we do, or not (one step).
      const d = maxDiff(node.data, (web as { data: Uint8Array }).data);
      expect(d.alpha, name).toBe(0);
      expect(d.colour, name).toBeLessThanOrEqual(name.includes('16') ? 1 : 0);
    }
  });

  it('the samples (PNG and JPEG) agree: PNG exactly, JPEG within the two decoders\' rounding', async () => {
    for (const name of readdirSync(samplesDir).filter((n) => /\.(png|jpg)$/.test(n))) {
      const node = decodeImageNode(name, read(samplesDir, name));
      const web = await inBrowser(name, read(samplesDir, name));
      expect(web, name).toMatchObject({ width: node.width, height: node.height });
      const d = maxDiff(node.data, (web as { data: Uint8Array }).data);
      if (name.endsWith('.png')) expect(d.colour, name).toBe(0);
      else expect(d.meanColour, name).toBeLessThan(3); // libjpeg-turbo and jpeg-js differ in IDCT and chroma upsampling
    }
  });

});

describe.skipIf(!existsSync(CHROMIUM))('decode-browser (Chromium) refuses what decode-node refuses', () => {
  it('bombs, zero sizes and a palette PNG without PLTE are refused in the browser too, by name', async () => {
    const pal = read(testdataDir, 'pal4.png');
    const noPlte = concat(pal.subarray(0, 8), ...pngChunkRanges(pal).filter((c) => c.type !== 'PLTE').map((c) => pal.subarray(c.start, c.end)));
    const cases: [string, Uint8Array, RegExp][] = [
      ['bomb.png', png(ihdr(100000, 100000, 8, 0), chunk('IDAT', zerosZlib(1.2e9))), /^bomb\.png: the PNG declares 100000x100000 pixels \(10000 megapixels\), above the limit of 64 megapixels/],
      ['flat.png', png(ihdr(640, 0), chunk('IDAT', zerosZlib(0))), /^flat\.png: the PNG header declares a 640x0 image/],
      ['nopal.png', noPlte, /^nopal\.png: a palette PNG without its PLTE chunk/],
      ['notes.gif', new TextEncoder().encode('GIF89a....'), /^notes\.gif: not a PNG, JPEG or WebP image/],
    ];
    for (const [name, bytes, message] of cases) {
      const web = await inBrowser(name, bytes);
      expect(web, name).toMatchObject({ name: 'ImageDecodeError' });
      expect((web as { error: string }).error, name).toMatch(message);
      expect(() => decodeImageNode(name, bytes)).toThrow(ImageDecodeError);
    }
  });

  it('a 500 MB iCCP profile does not stall the browser either (Chromium skips it)', async () => {
    const icc = concat(new TextEncoder().encode('bomb\0\0'), zerosZlib(5e8));
    const t = performance.now();
    const web = await inBrowser('iccp.png', png(ihdr(64, 64), chunk('iCCP', icc), chunk('IDAT', zerosZlib(64 * (1 + 64 * 3)))));
    expect(web).toMatchObject({ width: 64, height: 64 });
    expect(performance.now() - t).toBeLessThan(5000);
  });

  it('the seeded damaged files of the Node fuzz test: decoded consistently or refused by name, in Chromium', async () => {
    const problems: string[] = [];
    const tally = { cases: 0, decoded: 0 };
    for (const g of FUZZ_GROUPS)
      for (const [name, bytes] of fuzzCases(g)) {
        const t = performance.now();
        const web = await inBrowser(name, bytes, false);
        const outcome = 'data' in web ? { width: web.width, height: web.height, bytes: web.bytes } : { error: web.name, message: web.error };
        tally.cases++;
        if ('data' in web) tally.decoded++;
        const p = fuzzProblem(name, outcome, performance.now() - t);
        if (p) problems.push(p);
      }
    console.log(`image fuzz (browser): ${tally.cases} damaged files tried, ${tally.decoded} decoded, ${tally.cases - tally.decoded} refused`);
    expect(problems.slice(0, 10)).toEqual([]);
  });
});
