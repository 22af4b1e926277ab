// One full-width SD 1.5 layer on the GPU: the first transformer's cross-attention (320 channels, 8 heads, 77x768 context) forward and backward with a LoRA at an 8x8 latent.
import { beforeAll, describe, expect, it } from 'vitest';
import { MetaBackend, type Backend, type GpuBackend } from '../engine/backend.js';
import { noGrad } from '../engine/autograd.js';
import { f16BitsToF32 } from '../engine/dtype.js';
import { backward } from '../engine/grad.js';
import { mseLoss } from '../engine/index.js';
import { testBackend } from '../engine/testing/gpu.js';
import { scope, tensor, type Tensor } from '../engine/tensor.js';
import { initFor, tensorBits } from './sd15-init.js';
import { diffusersToLdmUnet } from './keymap.js';
import { Layers } from './layers.js';
import { kohyaName, LoraNetwork, loraTargets } from './lora.js';
import { DeviceWeights } from './pipeline.js';
import { attentionLayer, SD15_UNET, unetWeightShapes } from './unet.js';

/**
 * The cross-attention of SD 1.5's first transformer block (down_blocks.0.attentions.0, attn2): 320
 * channels, 8 heads of 40, queries from an 8x8 latent's 64 tokens, keys and values from a 77x768 text
 * context, with kohya's LoRA on to_q, to_k, to_v and to_out.0. Not the whole level: on SwiftShader a
 * pipeline with a GEMM takes 3-10 s to compile, and the first level's forward and backward need 94
 * pipelines (the whole level took 6.5 minutes here under load); this layer needs 33 (18 GEMM or attention).
 */
const BLOCK = 'down_blocks.0.attentions.0.transformer_blocks.0.attn2';
const TOKENS = 8 * 8;
const T = 77;
const C = 320;

/** The layer's weights as `npm run sd15-model` writes them (same names, seed and scaling), f16 on the device. */
function weights(b: Backend): DeviceWeights {
  const w = new DeviceWeights();
  for (const [name, shape] of unetWeightShapes(SD15_UNET)) {
    if (!name.startsWith(`${BLOCK}.`)) continue;
    const bits = tensorBits({ name: diffusersToLdmUnet(name, SD15_UNET), shape, ...initFor(name, shape) }, 15);
    w.set(name, tensor(b, b.kind === 'gpu' ? Float32Array.from(bits, f16BitsToF32) : [], shape, 'f16'));
  }
  return w;
}

/** Deterministic values in ±bound (a small LCG: the test needs spread, not quality). */
function values(n: number, seed: number, bound = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 * bound;
  });
}

/** kohya's LoRA modules of this layer at rank 16, with non-zero up weights so both halves get gradients. */
function lora(b: Backend): LoraNetwork {
  const specs = loraTargets(SD15_UNET, null, { rank: 16, alpha: 16 }).filter((s) => s.path.startsWith(`${BLOCK}.`));
  const init = new Map(specs.map((s, i) => [kohyaName(s), { down: values(s.rank * s.inFeatures, 100 + i, 1 / Math.sqrt(s.inFeatures)), up: values(s.outFeatures * s.rank, 500 + i, 0.05) }]));
  return new LoraNetwork(b, specs, 0, init);
}

interface Inputs {
  x: Tensor;
  ctx: Tensor;
  target: Tensor;
  weight: Tensor;
}

/** Layer-normed-scale tokens and context (unit variance, as the block's LayerNorm and CLIP's final LayerNorm give). */
function inputs(b: Backend): Inputs {
  return {
    x: tensor(b, values(TOKENS * C, 1, 1.7), [1, TOKENS, C]),
    ctx: tensor(b, values(T * 768, 2, 1.7), [1, T, 768]),
    target: tensor(b, values(TOKENS * C, 3, 0.5), [1, TOKENS, C]),
    weight: tensor(b, [1], [1]),
  };
}

function loss(w: DeviceWeights, net: LoraNetwork, i: Inputs): Tensor {
  return mseLoss(attentionLayer(new Layers(w, net.adapter('unet')), BLOCK, i.x, i.ctx, SD15_UNET.heads), i.target, i.weight);
}

/** One forward and backward into the LoRA gradients; counts and the peak of bytes allocated on top of what was live. */
function step(b: Backend, w: DeviceWeights, net: LoraNetwork, i: Inputs): { loss: Tensor; dispatches: number; flops: number; extraPeak: number } {
  net.arenas.unet.zeroGrad();
  b.resetStats();
  b.resetPeak();
  const before = b.pool().liveBytes;
  const l = scope(() => {
    const l = loss(w, net, i);
    backward(l);
    return l;
  });
  return { loss: l, dispatches: b.stats.dispatches, flops: b.stats.flops, extraPeak: b.pool().peakLiveBytes - before };
}

const finite = (a: Float32Array) => a.every(Number.isFinite);

describe('SD 1.5 cross-attention at full width (8x8 latent, 77x768 context, LoRA rank 16)', () => {
  let b: GpuBackend;
  beforeAll(async () => {
    b = await testBackend();
  });

  it('has the real SD 1.5 shapes: 320-wide queries, 768-wide keys and values, 4 LoRA modules of rank 16', () => {
    const w = weights(new MetaBackend());
    expect(w.get(`${BLOCK}.to_q.weight`).shape).toEqual([C, C]);
    expect(w.get(`${BLOCK}.to_k.weight`).shape).toEqual([C, 768]);
    expect(w.get(`${BLOCK}.to_v.weight`).shape).toEqual([C, 768]);
    expect(w.get(`${BLOCK}.to_out.0.weight`).shape).toEqual([C, C]);
    expect(lora(new MetaBackend()).specs.map((s) => s.path.slice(BLOCK.length + 1))).toEqual(['to_q', 'to_k', 'to_v', 'to_out.0']);
  });

  it('forward and backward are finite, match the meta device count for count, and the LoRA gradient matches central differences', async () => {
    const t0 = performance.now();
    const w = weights(b);
    const net = lora(b);
    const io = inputs(b);
    const r = step(b, w, net, io);
    const l0 = (await r.loss.read())[0]!;
    r.loss.dispose();
    const grads = await net.arenas.unet.flatGrads.read();
    const params = await net.arenas.unet.flatParams.read();
    const stepMs = performance.now() - t0;
    expect(Number.isFinite(l0)).toBe(true);
    expect(finite(grads)).toBe(true);
    // Every module's down and up projection receives gradient.
    for (const name of net.arenas.unet.names) expect(Math.max(...(await net.arenas.unet.readGrad(name)).map(Math.abs)), name).toBeGreaterThan(0);

    // The meta device runs the same code: the same dispatches, FLOPs and bytes allocated on top of what was live.
    const meta = new MetaBackend();
    const mw = weights(meta);
    const mnet = lora(meta);
    const mio = inputs(meta);
    const m = step(meta, mw, mnet, mio);
    expect(r.dispatches).toBe(m.dispatches);
    expect(r.flops).toBe(m.flops);
    expect(r.extraPeak).toBe(m.extraPeak);

    // Directional derivative along a random direction over all LoRA parameters: g·d against (L(p+εd) - L(p-εd)) / 2ε.
    const d = values(params.length, 9);
    let gd = 0;
    for (let k = 0; k < params.length; k++) gd += grads[k]! * d[k]!;
    const eps = 2e-3;
    const at = async (sign: number) => {
      net.arenas.unet.flatParams.write(params.map((p, k) => p + sign * eps * d[k]!));
      const l = noGrad(() => scope(() => loss(w, net, io)));
      const v = (await l.read())[0]!;
      l.dispose();
      return v;
    };
    const fd = ((await at(1)) - (await at(-1))) / (2 * eps);
    console.log(`SD 1.5 ${BLOCK} at 8x8: loss ${l0.toFixed(5)}, ${r.dispatches} dispatches, ${(r.flops / 1e9).toFixed(2)} GFLOP, +${(r.extraPeak / 2 ** 20).toFixed(1)} MiB peak; g·d ${gd.toExponential(4)} vs central difference ${fd.toExponential(4)}; forward+backward ${(stepMs / 1000).toFixed(1)} s, all ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    expect(Math.abs(gd)).toBeGreaterThan(1e-3);
    expect(Math.abs(fd - gd) / Math.abs(gd)).toBeLessThan(0.02);

    for (const x of [io.x, io.ctx, io.target, io.weight, mio.x, mio.ctx, mio.target, mio.weight]) x.dispose();
    m.loss.dispose();
    net.dispose();
    mnet.dispose();
    w.dispose();
    mw.dispose();
  }, 300_000);
});
