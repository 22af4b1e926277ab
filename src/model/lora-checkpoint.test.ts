// The tiny U-Net's LoRA gradients on the GPU: the same with and without gradient checkpointing (network dropout on), with the feed-forwards in row chunks (a small binding limit) as whole, and for one image (proj_in/out layouts folded) as in a batch.
import { describe, expect, it } from 'vitest';
import type { Backend } from '../engine/backend.js';
import { noGrad } from '../engine/autograd.js';
import { backward } from '../engine/grad.js';
import { mseLoss } from '../engine/index.js';
import { testBackend } from '../engine/testing/gpu.js';
import { scope, tensor } from '../engine/tensor.js';
import { assertClose } from '../engine/testing/allclose.js';
import { Layers } from './layers.js';
import { LoraNetwork, loraTargets } from './lora.js';
import { DeviceWeights } from './pipeline.js';
import { TINY_UNET } from './tiny.js';
import { unetForward, unetWeightShapes } from './unet.js';

/** Deterministic values in ±bound (an LCG: spread, not quality). */
function values(n: number, seed: number, bound: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 * bound;
  });
}

/** Random frozen weights scaled by fan-in, norms near 1. */
function weights(b: Backend): DeviceWeights {
  const w = new DeviceWeights();
  let i = 0;
  for (const [name, shape] of unetWeightShapes(TINY_UNET)) {
    const n = shape.reduce((x, y) => x * y, 1);
    const fanIn = shape.length > 1 ? n / shape[0]! : 1;
    const v = name.endsWith('norm.weight') || /norm\d?\.weight$/.test(name) ? values(n, ++i, 0.1).map((x) => 1 + x) : values(n, ++i, 1 / Math.sqrt(fanIn));
    w.set(name, tensor(b, v, shape));
  }
  return w;
}

describe('tiny U-Net LoRA gradients', () => {
  it('are the same with gradient checkpointing as without (network dropout 0.1, masks replayed in the recompute)', async () => {
    const b = await testBackend();
    const w = weights(b);
    const lora = new LoraNetwork(b, loraTargets(TINY_UNET, null, { rank: 4, alpha: 4 }), 0, undefined, { dropout: 0.1 });
    // non-zero ups, so the downs get gradients too
    lora.arenas.unet.flatParams.write(values(lora.arenas.unet.numel, 77, 0.2));
    const [x, ctx, target] = ([[2, 4, 8, 8], [2, 77, 32], [2, 4, 8, 8]] as const).map((s, k) => tensor(b, values(s.reduce((p, q) => p * q, 1), 900 + k, 1), [...s]));
    const wt = tensor(b, [1, 0.5], [2]); // per-sample loss weights (min-SNR style)
    const grads = async (gradientCheckpointing: boolean) => {
      lora.arenas.unet.zeroGrad();
      const loss = scope(() => mseLoss(unetForward(new Layers(w, lora.adapter('unet', { training: true, seed: 3 })), TINY_UNET, x!, [500, 20], ctx!, { gradientCheckpointing }), target!, wt!));
      backward(loss);
      const [l, g] = await Promise.all([loss.read(), lora.arenas.unet.flatGrads.read()]);
      loss.dispose();
      return { loss: l[0]!, g };
    };
    const plain = await grads(false);
    const checkpointed = await grads(true);
    console.log(`tiny U-Net LoRA: loss ${plain.loss.toFixed(5)}, |grad| ${Math.hypot(...plain.g).toExponential(3)}`);
    expect(Math.hypot(...plain.g)).toBeGreaterThan(1e-4);
    expect(checkpointed.loss).toBe(plain.loss);
    assertClose(checkpointed.g, plain.g, { atol: 1e-6, rtol: 1e-4 }, 'LoRA gradients, checkpointed vs not');
    for (const t of [x, ctx, target, wt]) t!.dispose();
    lora.dispose();
    w.dispose();
  }, 600_000);

  it('are the same with the feed-forwards run in row chunks (binding limit 32 KiB) as whole', async () => {
    const b = await testBackend();
    const w = weights(b);
    const lora = new LoraNetwork(b, loraTargets(TINY_UNET, null, { rank: 4, alpha: 4 }), 0);
    lora.arenas.unet.flatParams.write(values(lora.arenas.unet.numel, 79, 0.2));
    const [x, ctx, target] = ([[2, 4, 8, 8], [2, 77, 32], [2, 4, 8, 8]] as const).map((s, k) => tensor(b, values(s.reduce((p, q) => p * q, 1), 920 + k, 1), [...s]));
    const run = async (maxBindingBytes?: number) => {
      lora.arenas.unet.zeroGrad();
      b.resetStats();
      const loss = scope(() => mseLoss(unetForward(new Layers(w, lora.adapter('unet')), TINY_UNET, x!, [500, 20], ctx!, { maxBindingBytes }), target!));
      backward(loss);
      const [l, g] = await Promise.all([loss.read(), lora.arenas.unet.flatGrads.read()]);
      loss.dispose();
      return { loss: l[0]!, g, splits: b.stats.byKernel.get('split')?.dispatches ?? 0 };
    };
    const whole = await run();
    // The largest hidden activation, [128 tokens, 256] f32 (128 KiB), runs as 4 chunks; the next level's as 2.
    const chunked = await run(32 * 1024);
    // Each chunked feed-forward splits its input (and its backward scatters the output's gradient): more split dispatches.
    expect(chunked.splits).toBeGreaterThan(whole.splits);
    expect(Math.hypot(...whole.g)).toBeGreaterThan(1e-4);
    // Per token the same arithmetic: only the weight gradients' sums over tokens are split into chunk partials.
    expect(chunked.loss).toBeCloseTo(whole.loss, 6);
    assertClose(chunked.g, whole.g, { atol: 1e-6, rtol: 1e-4 }, 'LoRA gradients, chunked feed-forwards vs whole');
    for (const t of [x, ctx, target]) t!.dispose();
    lora.dispose();
    w.dispose();
  }, 600_000);

  it('one image (proj_in/proj_out read and write NCHW in place) predicts what the same image does in a batch of two (NHWC copies)', async () => {
    const b = await testBackend();
    const w = weights(b);
    const lora = new LoraNetwork(b, loraTargets(TINY_UNET, null, { rank: 4, alpha: 4 }), 0);
    lora.arenas.unet.flatParams.write(values(lora.arenas.unet.numel, 78, 0.2));
    const shapes = [[4, 8, 8], [77, 32]] as const;
    const one = shapes.map((s, k) => values(s.reduce((p, q) => p * q, 1), 910 + k, 1));
    // Forward only: the backward of the folded layouts is checked bit for bit in engine/ops/lowrank.test.ts.
    const predict = async (B: number) => {
      const [x, ctx] = one.map((v, k) => {
        const rep = new Float32Array(v.length * B);
        for (let i = 0; i < B; i++) rep.set(v, i * v.length);
        return tensor(b, rep, [B, ...shapes[k]!]);
      });
      const y = noGrad(() => scope(() => unetForward(new Layers(w, lora.adapter('unet')), TINY_UNET, x!, new Array<number>(B).fill(300), ctx!)));
      const out = await y.read();
      for (const t of [y, x!, ctx!]) t.dispose();
      return out.subarray(0, one[0]!.length);
    };
    const single = await predict(1);
    const first = await predict(2);
    expect(Math.hypot(...single)).toBeGreaterThan(1e-2);
    assertClose(single, first, { atol: 1e-6, rtol: 1e-5 }, 'U-Net output, one image vs the first of a batch of two');
    lora.dispose();
    w.dispose();
  }, 600_000);
});
