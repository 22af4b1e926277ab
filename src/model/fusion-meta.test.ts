// Which kernels the SD 1.5 U-Net and VAE launch, counted on the meta device: group norm and SiLU
// run as one fused op, and the time embedding's SiLU runs once per forward, not once per ResNet.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../engine/backend.js';
import { noGrad } from '../engine/autograd.js';
import { backward } from '../engine/grad.js';
import { mean } from '../engine/ops/elementwise.js';
import { empty, param, scope } from '../engine/tensor.js';
import { Layers } from './layers.js';
import { metaWeights } from './pipeline.js';
import { SD15_UNET, unetForward, unetWeightShapes } from './unet.js';
import { SD15_VAE, vaeDecode, vaeEncode, vaeWeightShapes } from './vae.js';

const dispatchesOf = (meta: MetaBackend, kernel: string) => meta.stats.byKernel.get(kernel)?.dispatches ?? 0;

// 2 ResNets per down level (4 levels), 2 in the middle, 3 per up level: 22, each with two norms.
const RESNETS = 4 * 2 + 2 + 4 * 3;

describe('fused group norm + SiLU on the meta device', () => {
  it('SD 1.5 U-Net forward: one fused op per ResNet norm and the output norm, SiLU only in the time MLP', () => {
    const meta = new MetaBackend();
    const w = metaWeights(meta, unetWeightShapes(SD15_UNET));
    meta.resetStats();
    noGrad(() => scope(() => unetForward(new Layers(w), SD15_UNET, empty(meta, [1, 4, 32, 32]), [500], empty(meta, [1, 77, 768])))).dispose();
    expect(dispatchesOf(meta, 'group_norm_silu')).toBe(2 * RESNETS + 1);
    // the transformers' input norms, without an activation
    expect(dispatchesOf(meta, 'group_norm')).toBe(16);
    // time MLP's inner SiLU and silu(temb), shared by every ResNet (was one per ResNet)
    expect(dispatchesOf(meta, 'silu')).toBe(2);
    w.dispose();
  });

  it('SD 1.5 U-Net training step with checkpointing: the recompute repeats the fused ops only, backward has no SiLU pass', () => {
    const meta = new MetaBackend();
    const w = metaWeights(meta, unetWeightShapes(SD15_UNET));
    const x = param(meta, [], [1, 4, 32, 32]);
    meta.resetStats();
    const loss = scope(() => mean(unetForward(new Layers(w), SD15_UNET, x, [500], empty(meta, [1, 77, 768]), { gradientCheckpointing: true })));
    backward(loss);
    // forward, then each checkpointed block again in backward (conv_norm_out is outside the blocks)
    expect(dispatchesOf(meta, 'group_norm_silu')).toBe(2 * 2 * RESNETS + 1);
    expect(dispatchesOf(meta, 'silu')).toBe(2);
    expect(dispatchesOf(meta, 'silu_grad')).toBe(0);
    // dx of each norm once: fused ResNet and output norms, the transformers' group norms and 3 layer norms each
    expect(dispatchesOf(meta, 'norm_dx')).toBe(2 * RESNETS + 1 + 16 + 3 * 16);
    loss.dispose();
    x.grad?.dispose();
    x.dispose();
    w.dispose();
  });

  it('SD VAE encode and decode, also split into channel slabs: no separate SiLU', () => {
    const meta = new MetaBackend();
    const w = metaWeights(meta, vaeWeightShapes(SD15_VAE));
    // 4 MiB per buffer: the 128-channel 128² activations ([1, 128, 128, 128] f32 = 8 MiB) go in slabs
    for (const limit of [Infinity, 4 * 2 ** 20]) {
      meta.resetStats();
      noGrad(() =>
        scope(() => {
          const e = vaeEncode(new Layers(w), SD15_VAE, empty(meta, [1, 3, 128, 128]), { maxBindingBytes: limit });
          vaeDecode(new Layers(w), SD15_VAE, e.mean, { maxBindingBytes: limit });
        }),
      );
      expect(dispatchesOf(meta, 'silu')).toBe(0);
      // slabs run one fused op each: at least encoder 21 + decoder 29 (ResNet norms and conv_norm_out)
      expect(dispatchesOf(meta, 'group_norm_silu')).toBeGreaterThanOrEqual(21 + 29);
      if (limit !== Infinity) expect(dispatchesOf(meta, 'group_norm_silu')).toBeGreaterThan(21 + 29);
      // only the mid-block attentions' input norms are plain
      expect(dispatchesOf(meta, 'group_norm')).toBe(2);
    }
    w.dispose();
  });
});
