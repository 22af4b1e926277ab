// Distinct GPU pipelines of a full SD 1.5 LoRA training step, counted on the meta device by their WGSL
// sources (the pipeline cache's key): what the first step compiles, and what a second bucket shape adds.
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from './config.js';
import { stepSources } from './memory.js';
import { SD15_CLIP } from '../model/clip.js';
import { SD15_UNET } from '../model/unet.js';
import { SD15_VAE } from '../model/vae.js';

const SD15 = { unet: SD15_UNET, clip: SD15_CLIP, vae: SD15_VAE };

// Today's figures as upper bounds: a change that adds pipelines fails here. Issue 9's goals: 150 and 30.
const MAX_STEP_PIPELINES = 85;
const MAX_SECOND_BUCKET_ADDS = 6;

describe('pipelines of an SD 1.5 training step on the meta device', () => {
  it('256² (batch 1, checkpointing, text encoder trained), then a 320x192 bucket', () => {
    const c = { ...DEFAULT_CONFIG, resolution: 256, batchSize: 1, gradientCheckpointing: true, trainTextEncoder: true };
    const one = stepSources(SD15, c, [[1, 32, 32]]);
    const two = stepSources(SD15, c, [[1, 32, 32], [1, 24, 40]]);
    const added = two.length - one.length;
    const byName = new Map<string, number>();
    for (const k of one) byName.set(k.name, (byName.get(k.name) ?? 0) + 1);
    const top = [...byName].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([n, k]) => `${n} ${k}`).join(', ');
    console.log(`SD 1.5 LoRA step at 256²: ${one.length} distinct pipelines (most: ${top}); a 320x192 bucket (latent 40x24) adds ${added}`);
    expect(one.length).toBeGreaterThan(0);
    expect(one.length).toBeLessThanOrEqual(MAX_STEP_PIPELINES);
    expect(added).toBeLessThanOrEqual(MAX_SECOND_BUCKET_ADDS);
  });
});
