// The full SD 1.5 configuration on the meta device: parameter count, FLOPs and memory, no weights needed.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../engine/backend.js';
import { noGrad } from '../engine/autograd.js';
import { backward } from '../engine/grad.js';
import { mean } from '../engine/ops/elementwise.js';
import { empty, scope } from '../engine/tensor.js';
import { clipWeightShapes, SD15_CLIP } from './clip.js';
import { Layers, paramCount } from './layers.js';
import { metaWeights } from './pipeline.js';
import { SD15_UNET, unetForward, unetWeightShapes } from './unet.js';
import { LoraNetwork, loraTargets } from './lora.js';
import { vaeWeightShapes, SD15_VAE } from './vae.js';

describe('SD 1.5 on the meta device', () => {
  it('has 859.5M U-Net parameters (±0.1%), 123.1M in CLIP, 83.7M in the VAE', () => {
    const n = paramCount(unetWeightShapes(SD15_UNET));
    expect(Math.abs(n - 859.5e6) / 859.5e6).toBeLessThan(0.001);
    expect(Math.abs(paramCount(clipWeightShapes(SD15_CLIP)) - 123.06e6) / 123.06e6).toBeLessThan(0.001);
    expect(Math.abs(paramCount(vaeWeightShapes(SD15_VAE)) - 83.65e6) / 83.65e6).toBeLessThan(0.001);
    console.log(`SD 1.5 U-Net parameters: ${n}`);
  });

  it('U-Net forward at 64x64 latents costs about 0.8 TFLOP (0.4 T multiply-adds)', () => {
    const meta = new MetaBackend();
    const w = metaWeights(meta, unetWeightShapes(SD15_UNET));
    meta.resetStats();
    meta.resetPeak();
    const out = noGrad(() => scope(() => unetForward(new Layers(w), SD15_UNET, empty(meta, [1, 4, 64, 64]), [500], empty(meta, [1, 77, 768]))));
    expect(out.shape).toEqual([1, 4, 64, 64]);
    const tflop = meta.stats.flops / 1e12;
    console.log(`SD 1.5 U-Net forward, batch 1, 64x64 latent: ${tflop.toFixed(3)} TFLOP in ${meta.stats.dispatches} dispatches; weights ${(w.bytes / 2 ** 30).toFixed(2)} GiB f16; peak ${(meta.pool().peakLiveBytes / 2 ** 30).toFixed(2)} GiB`);
    expect(tflop).toBeGreaterThan(0.8);
    expect(tflop).toBeLessThan(0.98);
    out.dispose();
    w.dispose();
  });

  it('a LoRA training step (kohya targets, checkpointing) at 512x512 fits a consumer GPU', () => {
    const meta = new MetaBackend();
    const w = metaWeights(meta, unetWeightShapes(SD15_UNET));
    const specs = loraTargets(SD15_UNET, SD15_CLIP, { rank: 16, alpha: 16 });
    expect(specs.filter((s) => s.part === 'unet').length).toBe(192);
    expect(specs.filter((s) => s.part === 'te').length).toBe(72);
    const lora = new LoraNetwork(meta, specs.filter((s) => s.part === 'unet'), 0);
    meta.resetPeak();
    meta.resetStats();
    const loss = scope(() => mean(unetForward(new Layers(w, lora.adapter('unet')), SD15_UNET, empty(meta, [1, 4, 64, 64]), [500], empty(meta, [1, 77, 768]), { gradientCheckpointing: true })));
    backward(loss);
    const peak = meta.pool().peakLiveBytes;
    console.log(`SD 1.5 LoRA step (rank 16, checkpointing), batch 1 at 512: peak ${(peak / 2 ** 30).toFixed(2)} GiB, ${(meta.stats.flops / 1e12).toFixed(2)} TFLOP`);
    expect(peak).toBeLessThan(6 * 2 ** 30);
    loss.dispose();
    lora.dispose();
    w.dispose();
  });
});
