// LoRA starting weights: downs drawn from the project's seeded Philox RNG within kaiming's ±1/sqrt(fan_in), ups zero, one stream per part.
import { describe, expect, it } from 'vitest';
import { Rng } from '../engine/rng.js';
import { testBackend } from '../engine/testing/gpu.js';
import { kohyaName, LoraNetwork, loraTargets } from './lora.js';
import { TINY_CLIP, TINY_UNET } from './tiny.js';

describe('LoRA initialisation', () => {
  it('draws the downs from Rng(seed).fork("lora-unet") in ±1/sqrt(fan_in), the ups zero, the text encoder on a stream of its own', async () => {
    const b = await testBackend();
    const o = { rank: 4, alpha: 4 };
    const unetOnly = new LoraNetwork(b, loraTargets(TINY_UNET, null, o), 7);
    const withTe = new LoraNetwork(b, loraTargets(TINY_UNET, TINY_CLIP, o), 7);
    const first = unetOnly.specs[0]!;
    const fanIn = first.inFeatures * first.kernel * first.kernel;
    const bound = 1 / Math.sqrt(fanIn);
    const rng = new Rng(7).fork('lora-unet');
    const expected = Float32Array.from({ length: fanIn * first.rank }, () => rng.uniform(-bound, bound));
    const down = await unetOnly.arenas.unet.read(`${kohyaName(first)}.lora_down.weight`);
    expect(down).toEqual(expected);
    expect((await unetOnly.arenas.unet.read(`${kohyaName(first)}.lora_up.weight`)).every((v) => v === 0)).toBe(true);
    // Training the text encoder too leaves the U-Net's starting values as they were.
    expect(await withTe.arenas.unet.flatParams.read()).toEqual(await unetOnly.arenas.unet.flatParams.read());
    const teDown = await withTe.arenas.te!.read(`${kohyaName(withTe.specs.find((s) => s.part === 'te')!)}.lora_down.weight`);
    expect(teDown.some((v) => v !== 0)).toBe(true);
    expect(Math.max(...teDown.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(TINY_CLIP.width));
    unetOnly.dispose();
    withTe.dispose();
  }, 120_000);
});
