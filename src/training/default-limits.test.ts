// A GPU with WebGPU's default limits (8 storage buffers a stage, 128 MiB bindings, 16 KiB workgroup memory) trains the tiny pipeline as the full-limit device does, bit for bit, through the fallbacks.
import { describe, expect, it } from 'vitest';
import type { GpuBackend } from '../engine/backend.js';
import { WEBGPU_DEFAULT_LIMITS } from '../engine/kernel-limits.js';
import { testGpu, testGpuWithLimits } from '../engine/testing/gpu.js';
import { LoraNetwork } from '../model/lora.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';
import { loraSpecs, networkOptions } from './network.js';
import { createOptimizer } from './optimizer.js';
import { Rng } from './rng.js';
import { loraArenas, stepSettings, trainStep, type MicroBatch } from './step.js';
import { tinyPipeline } from './testing.js';

/**
 * Steps that reach every fused kernel with a fallback: the text encoder trained (causal
 * self-attention), cross-attention with LoRA on to_k/to_v (dQ and dK, dV both needed), network
 * dropout folded into the GEMM pairs of the LoRA backward. Latents and noise are drawn here (the
 * VAE is not what this checks, and its pipelines would compile twice more).
 */
const config: TrainConfig = { ...DEFAULT_CONFIG, trainTextEncoder: true, gradientCheckpointing: false, networkDropout: 0.1, networkDim: 4, networkAlpha: 2, seed: 3 };

/** Micro-batch `s` of a batch of one at 64 px (8x8 latents): fixed random latents and noise. */
function batch(s: number, channels: number): MicroBatch {
  const rng = new Rng(40 + s);
  const n = channels * 8 * 8;
  return { latents: rng.normals(n), noise: rng.normals(n), timesteps: [100 + 300 * s], captions: ['a photo of smth'], height: 8, width: 8 };
}

/** Each step's loss, the LoRA's parameters and gradients after the last, and the dispatches by kernel. */
async function run(backend: GpuBackend, steps: number) {
  const pipeline = await tinyPipeline(backend);
  const lora = new LoraNetwork(backend, loraSpecs(pipeline, config), config.seed, undefined, networkOptions(pipeline, config));
  const model = { unet: pipeline.unet, clip: pipeline.clip, tokenizer: pipeline.tokenizer, lora };
  const optimizer = createOptimizer(config);
  const losses: number[] = [];
  backend.resetStats();
  for (let s = 1; s <= steps; s++) {
    const r = await trainStep(model, stepSettings(config), optimizer, [batch(s, pipeline.unet.config.inChannels)], { step: s, lr: { unet: 1e-3, te: 5e-4 } }).read();
    losses.push(r.loss);
  }
  const dispatches = new Map([...backend.stats.byKernel].map(([k, v]) => [k, v.dispatches]));
  const buffers = await Promise.all(loraArenas(lora).flatMap((a) => [a.flatParams.read(), a.flatGrads.read()]));
  optimizer.dispose();
  lora.dispose();
  pipeline.dispose();
  return { losses, buffers, dispatches };
}

describe('a device with WebGPU default limits', () => {
  it('trains two tiny-pipeline steps to the same losses, LoRA weights and gradients as the full-limit device', async () => {
    const full = (await testGpu()).backend;
    const small = (await testGpuWithLimits(WEBGPU_DEFAULT_LIMITS)).backend;
    expect(small.maxStorageBuffers).toBe(8);
    expect(small.device.limits.maxStorageBufferBindingSize).toBe(128 * 2 ** 20);
    expect(small.device.limits.maxComputeWorkgroupStorageSize).toBe(16384);
    // The full device must bind the fused kernels, or this compares the fallback with itself.
    expect(full.maxStorageBuffers).toBeGreaterThanOrEqual(10);
    const a = await run(full, 2);
    const b = await run(small, 2);
    console.log(`default limits: ${b.dispatches.get('attention_backward')} attention backward and ${b.dispatches.get('matmul')} GEMM dispatches for two steps vs ${a.dispatches.get('attention_backward')} and ${a.dispatches.get('matmul')} with the adapter's limits`);
    // The fallbacks ran: the attention backward in two dispatches, GEMM pairs unpaired.
    expect(b.dispatches.get('attention_backward')).toBe(2 * a.dispatches.get('attention_backward')!);
    expect(b.dispatches.get('matmul')!).toBeGreaterThan(a.dispatches.get('matmul')!);
    expect(b.losses.length).toBe(2);
    expect(b.losses).toEqual(a.losses);
    expect(a.losses.every(Number.isFinite)).toBe(true);
    // U-Net and text-encoder parameters and gradients.
    expect(b.buffers.length).toBe(4);
    b.buffers.forEach((x, i) => expect(x, `buffer ${i}`).toEqual(a.buffers[i]));
  }, 20 * 60_000);
});
