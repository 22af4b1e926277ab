// Per-image repeats (kohya N_ folders) in the trainer's epochs: each image is drawn its own number of times.
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from './config.js';
import { sampleItems, useTinyPipeline } from './testing.js';
import { Trainer, type TrainingExample } from './trainer.js';

const tiny = useTinyPipeline();

describe('per-folder repeats', () => {
  it('draw a 10_-style image its folder’s repeats per epoch and the others the Repeats setting', async () => {
    const [a, b, c] = sampleItems(3);
    const items = [{ ...a!, name: '3_x/a.png', repeats: 3 }, { ...b!, name: 'b.png' }, { ...c!, name: '1_y/c.png', repeats: 1 }];
    const t = new Trainer(tiny.pipeline, { ...DEFAULT_CONFIG, resolution: 64, enableBuckets: false, flipAug: false, trainTextEncoder: false, repeats: 2, batchSize: 1 }, items);
    expect(t.plan.imagesPerEpoch).toBe(6); // 3 + 2 + 1
    // The draw reads only each latent's bucket: one bucket stands in for the VAE pass (35 s on SwiftShader), the rest is the trainer's own.
    const inside = t as unknown as { latents: { bucket: { width: number; height: number }; data: Float32Array; flipped: null }[]; batches(): Generator<TrainingExample[]> };
    inside.latents = items.map(() => ({ bucket: { width: 64, height: 64 }, data: new Float32Array(4 * 8 * 8), flipped: null }));
    const gen = inside.batches();
    const counts = [0, 0, 0];
    for (let i = 0; i < 6; i++) for (const s of gen.next().value as TrainingExample[]) counts[s.item]!++;
    expect(counts).toEqual([3, 2, 1]);
    expect(t.epoch).toBe(0);
    gen.next();
    expect(t.epoch).toBe(1);
    t.dispose();
  }, 10 * 60_000);
});
