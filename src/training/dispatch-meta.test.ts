// Dispatches of one LoRA training step on the meta device (SD 1.5 at 256² and the tiny demo pipeline), per kernel.
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from './config.js';
import { metaStepCounts } from './memory.js';
import { SD15_CLIP, type ClipConfig } from '../model/clip.js';
import { TINY_CLIP, TINY_UNET, TINY_VAE } from '../model/tiny.js';
import { SD15_UNET, type UNetConfig } from '../model/unet.js';
import { SD15_VAE, type VaeConfig } from '../model/vae.js';

interface StepCount {
  total: number;
  byKernel: Map<string, number>;
}

/**
 * One optimizer step as the Trainer runs it (training/step.ts's trainStep on the meta device): text
 * encoder with its LoRA, U-Net forward with checkpointing, min-SNR-weighted loss, backward, global
 * norm, AdamW. Batch 1, rank 16, `dropout` on the LoRA's down projection.
 */
function stepDispatches(unet: UNetConfig, clip: ClipConfig, vae: VaeConfig, latent: number, dropout: number): StepCount {
  const c = { ...DEFAULT_CONFIG, resolution: latent * 8, batchSize: 1, gradAccumulation: 1, networkDim: 16, networkAlpha: 16, convDim: 0, trainTextEncoder: true, gradientCheckpointing: true, networkDropout: dropout, optimizer: 'adamw', loss: 'l2', maxGradNorm: 1, cacheTextEncoderOutputs: false } as const;
  const n = metaStepCounts({ unet, clip, vae }, c);
  return { total: n.dispatches, byKernel: n.byKernel };
}

function log(label: string, c: StepCount): void {
  console.log(`${label}: ${c.total} dispatches\n` + [...c.byKernel].map(([k, n]) => `  ${k.padEnd(28)} ${n}`).join('\n'));
}

describe('dispatches per LoRA training step on the meta device', () => {
  it('SD 1.5 at 256² (batch 1, checkpointing, text encoder trained, network dropout 0.1)', () => {
    const c = stepDispatches(SD15_UNET, SD15_CLIP, SD15_VAE, 32, 0.1);
    log('SD 1.5 256² step, dropout 0.1', c);
    // 6,335 before the LoRA and residual adds moved into GEMM epilogues, 4,882 before self-attention's q, k, v shared one down GEMM,
    // 4,626 before the cross-attention keys and values and the time projections moved out of the recompute,
    // 4,476 before q, k, v's up projections ran as one batched GEMM, 4,335 (592 of them dropout) before the
    // mask moved into the GEMMs that read h and produce its gradient: network dropout now costs no dispatch,
    // 2,317 before attention's backward (Δ, dQ, dK/dV) became one dispatch, 2,229 before independent GEMMs (q, k, v's base + up
    // projections, the text encoder's and cross-attention's down projections, the time projections) ran two per dispatch,
    // 2,126 before proj_in/proj_out read and wrote NCHW in place (their layout transposes folded into the GEMMs), 2,030 before
    // the ResBlocks' frozen conv2 and shortcut ran after their checkpointed part (not recomputed), 1,997 before the skip
    // concats' gradients became views (no split copies); issue 9's goal is 2,000
    expect(c.total).toBeLessThanOrEqual(1985);
    expect(c.byKernel.get('split') ?? 0).toBe(0);
    expect(c.byKernel.get('dropout') ?? 0).toBe(0);
  });

  it('SD 1.5 at 256² without network dropout', () => {
    const c = stepDispatches(SD15_UNET, SD15_CLIP, SD15_VAE, 32, 0);
    log('SD 1.5 256² step, no dropout', c);
    // 5,615, then 4,162, 4,002, 3,884, 2,317, 2,229, 2,126, 2,030, 1,997 before
    expect(c.total).toBeLessThanOrEqual(1985);
    expect(c.byKernel.get('transpose') ?? 0).toBe(0);
  });

  it('tiny demo pipeline at 64² (8x8 latents, network dropout 0.1)', () => {
    const c = stepDispatches(TINY_UNET, TINY_CLIP, TINY_VAE, 8, 0.1);
    log('tiny step, dropout 0.1', c);
    // 2,485, then 1,930, 1,818, 1,751, 1,723 (before the dropout masks folded into the GEMMs), 975, 943, 901, 859, 842 before
    expect(c.total).toBeLessThanOrEqual(836);
  });
});
