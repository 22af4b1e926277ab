// `lorasmith sample` as a user runs it: a separate process on Dawn, a kohya LoRA file in, one PNG per strength out with its settings; bad settings named.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode as decodePng } from 'fast-png';
import { describe, expect, it } from 'vitest';
import { randomArray } from '../engine/testing/allclose.js';
import { writeLoraFile } from '../model/lora-file.js';
import { loraTargets } from '../model/lora.js';
import { TINY_CLIP, TINY_UNET } from '../model/tiny.js';
import { cli } from './testing.js';

describe('lorasmith sample', () => {
  it('renders the base model and a LoRA file from one seed, PNGs with A1111 parameters and the exact settings', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-sample-'));
    const specs = loraTargets(TINY_UNET, TINY_CLIP, { rank: 2, alpha: 2 });
    const modules = specs.map((spec, i) => ({ spec, down: Float32Array.from(randomArray(spec.rank * spec.inFeatures, i, -0.5, 0.5)), up: Float32Array.from(randomArray(spec.outFeatures * spec.rank, 99 + i, -0.5, 0.5)) }));
    writeFileSync(join(dir, 'mine.safetensors'), await writeLoraFile(modules, {}, 'fp32'));
    const r = await cli(['sample', '--model', 'tiny', '--lora', join(dir, 'mine.safetensors'), '--prompt', 'a photo of a cat', '--negative', 'blurry', '--steps', '1', '--guidance', '3', '--sampler', 'euler', '--strengths', '0,1', '--out', join(dir, 'out')]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/image 2\/2 \(strength 1\) step 1\/1, decoding/);
    const [base, lora] = ['base-0.png', 'mine-1.png'].map((f) => decodePng(readFileSync(join(dir, 'out', f))));
    expect([base!.width, base!.height, lora!.width]).toEqual([64, 64, 64]);
    expect(base!.text.parameters).toMatch(/^a photo of a cat\nNegative prompt: blurry\nSteps: 1, Sampler: Euler, CFG scale: 3, Seed: 1, Size: 64x64, Model: [^,]+$/);
    expect(lora!.text.parameters).toMatch(/, Lora: mine\.safetensors, Lora strength: 1$/);
    expect(JSON.parse(lora!.text.lorasmith!)).toMatchObject({ prompt: 'a photo of a cat', negativePrompt: 'blurry', seed: 1, steps: 1, guidance: 3, sampler: 'euler', strength: 1, lora: 'mine.safetensors' });
    expect((base!.data as Uint8Array).some((v, i) => v !== (lora!.data as Uint8Array)[i])).toBe(true);
  }, 10 * 60_000);

  it('names bad settings and exits 1 before loading anything', async () => {
    const r = await cli(['sample', '--model', 'tiny', '--prompt', 'x', '--out', tmpdir(), '--width', '100', '--strengths', '0,3', '--sampler', 'heun']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/invalid sample settings:\n {2}width: Width must be a multiple of 64 \(got 100\)/);
    expect(r.out).toMatch(/sampler: Sampler must be one of ddim, euler, euler_a/);
    expect(r.out).toMatch(/strengths: Strength must be between 0 and 1\.5 \(got 3\)/);
    expect((await cli(['sample', '--model', 'tiny'])).out).toMatch(/sample needs --model, --prompt and --out/);
  }, 120_000);
});
