// Dispatches of one LoRA training step on the meta device (SD 1.5 at 256² and the tiny demo pipeline), per kernel.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../engine/backend.js';
import { backward } from '../engine/grad.js';
import { mseLoss } from '../engine/index.js';
import { adamw, globalGradNorm } from '../engine/optim/adamw.js';
import { empty, scope } from '../engine/tensor.js';
import { clipForward, clipWeightShapes, SD15_CLIP, type ClipConfig } from './clip.js';
import { Layers } from './layers.js';
import { LoraNetwork, loraTargets } from './lora.js';
import { metaWeights } from './pipeline.js';
import { TINY_CLIP, TINY_UNET } from './tiny.js';
import { SD15_UNET, unetForward, unetWeightShapes, type UNetConfig } from './unet.js';

interface StepCount {
  total: number;
  byKernel: Map<string, number>;
}

/**
 * One optimizer step as the Trainer runs it: text encoder with its LoRA, U-Net forward with
 * checkpointing, loss, backward, global norm, AdamW. Batch 1, rank 16, `dropout` on the LoRA's down projection.
 */
function stepDispatches(unet: UNetConfig, clip: ClipConfig, latent: number, dropout: number): StepCount {
  const meta = new MetaBackend();
  const unetW = metaWeights(meta, unetWeightShapes(unet));
  const clipW = metaWeights(meta, clipWeightShapes(clip));
  const lora = new LoraNetwork(meta, loraTargets(unet, clip, { rank: 16, alpha: 16 }), 0, undefined, { dropout });
  const opt = adamw({ beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01 });
  const arenas = [lora.arenas.unet, lora.arenas.te!];
  meta.resetStats();
  for (const a of arenas) a.zeroGrad();
  const loss = scope(() => {
    const ctx = clipForward(new Layers(clipW, lora.adapter('te', { training: true })), clip, new Int32Array(clip.maxPositions), 1);
    const pred = unetForward(new Layers(unetW, lora.adapter('unet', { training: true })), unet, empty(meta, [1, 4, latent, latent]), [500], ctx, { gradientCheckpointing: true });
    const l = mseLoss(pred, empty(meta, [1, 4, latent, latent]), empty(meta, [1]));
    backward(l);
    return l;
  });
  loss.dispose();
  const norm = globalGradNorm(arenas);
  const flag = empty(meta, [1]);
  opt.update(arenas.map((arena) => ({ arena, lr: 1e-4 })), { step: 1, maxGradNorm: 1, gradNorm: norm, nanFlag: flag });
  norm.dispose();
  flag.dispose();
  const byKernel = new Map([...meta.stats.byKernel].map(([k, v]) => [k, v.dispatches] as [string, number]).sort((a, b) => b[1] - a[1]));
  const out = { total: meta.stats.dispatches, byKernel };
  opt.dispose();
  lora.dispose();
  unetW.dispose();
  clipW.dispose();
  return out;
}

function log(label: string, c: StepCount): void {
  console.log(`${label}: ${c.total} dispatches\n` + [...c.byKernel].map(([k, n]) => `  ${k.padEnd(28)} ${n}`).join('\n'));
}

describe('dispatches per LoRA training step on the meta device', () => {
  it('SD 1.5 at 256² (batch 1, checkpointing, text encoder trained, network dropout 0.1)', () => {
    const c = stepDispatches(SD15_UNET, SD15_CLIP, 32, 0.1);
    log('SD 1.5 256² step, dropout 0.1', c);
    // 6,335 before the LoRA and residual adds moved into GEMM epilogues, 4,882 before self-attention's q, k, v shared one down GEMM,
    // 4,626 before the cross-attention keys and values and the time projections moved out of the recompute,
    // 4,476 before q, k, v's up projections ran as one batched GEMM, 4,335 (592 of them dropout) before the
    // mask moved into the GEMMs that read h and produce its gradient: network dropout now costs no dispatch
    expect(c.total).toBeLessThanOrEqual(3743);
    expect(c.byKernel.get('dropout') ?? 0).toBe(0);
  });

  it('SD 1.5 at 256² without network dropout', () => {
    const c = stepDispatches(SD15_UNET, SD15_CLIP, 32, 0);
    log('SD 1.5 256² step, no dropout', c);
    // 5,615, then 4,162, 4,002, 3,884 before
    expect(c.total).toBeLessThanOrEqual(3743);
  });

  it('tiny demo pipeline at 64² (8x8 latents, network dropout 0.1)', () => {
    const c = stepDispatches(TINY_UNET, TINY_CLIP, 8, 0.1);
    log('tiny step, dropout 0.1', c);
    // 2,485, then 1,930, 1,818, 1,751, 1,723 (before the dropout masks folded into the GEMMs) before
    expect(c.total).toBeLessThanOrEqual(1503);
  });
});
