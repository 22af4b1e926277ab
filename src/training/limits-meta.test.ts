// Every kernel of SD 1.5 training steps (each network type and optimizer) and of the VAE fits WebGPU's default limits once the meta device takes a default device's fallbacks; counts what the fallbacks cost.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../engine/backend.js';
import { noGrad } from '../engine/autograd.js';
import { DEFAULT_KERNEL_LIMITS, kernelLimitProblems, kernelNeeds, WEBGPU_DEFAULT_LIMITS } from '../engine/kernel-limits.js';
import { empty, scope } from '../engine/tensor.js';
import { SD15_CLIP } from '../model/clip.js';
import { Layers } from '../model/layers.js';
import { SD15_UNET } from '../model/unet.js';
import { metaWeights } from '../model/pipeline.js';
import { SD15_VAE, vaeDecode, vaeEncode, vaeWeightShapes } from '../model/vae.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';
import { latentMoments } from './data.js';
import { MetaRun, stepSources, type KernelSource } from './memory.js';

const SD15 = { unet: SD15_UNET, clip: SD15_CLIP, vae: SD15_VAE };
const DEFAULT_STORAGE = WEBGPU_DEFAULT_LIMITS.maxStorageBuffersPerShaderStage;

/** Between them, every kind of kernel a run dispatches: each network type, each optimizer, LoCon, both dropouts, the text encoder trained, a batch of 2. */
const RUNS: [string, Partial<TrainConfig>][] = [
  ['LoRA + LoCon, AdamW, network dropout, batch 2', { networkType: 'lora', convDim: 4, convAlpha: 4, optimizer: 'adamw', networkDropout: 0.1, batchSize: 2 }],
  ['LoHa, Lion', { networkType: 'loha', optimizer: 'lion', networkDropout: 0 }],
  ['LoKr, SGD', { networkType: 'lokr', optimizer: 'sgd', networkDropout: 0 }],
  ['DoRA, Prodigy', { networkType: 'dora', optimizer: 'prodigy', networkDropout: 0 }],
];

const base: Partial<TrainConfig> = { resolution: 256, gradientCheckpointing: true, trainTextEncoder: true, batchSize: 1 };

/**
 * The sources of one step of each of `runs` (latents [batch, 32, 32]) on a meta device binding at
 * most `maxStorageBuffers`: the plain kernels, and for the first run also the variants of a GPU with
 * subgroups of 4 to 8 (SwiftShader, lavapipe) and shader-f16.
 */
function runSources(maxStorageBuffers: number, runs = RUNS): KernelSource[] {
  const all = new Map<string, string>();
  for (const [i, [, extra]] of runs.entries()) {
    const c = { ...DEFAULT_CONFIG, ...base, ...extra };
    for (const k of stepSources(SD15, c, [[c.batchSize, 32, 32]], { maxStorageBuffers })) all.set(k.source, k.name);
    if (i === 0) for (const k of stepSources(SD15, c, [[c.batchSize, 32, 32]], { maxStorageBuffers, subgroups: { min: 4, max: 8 }, nativeF16: true })) all.set(k.source, k.name);
  }
  return [...all].map(([source, name]) => ({ name, source }));
}

/** The VAE's sources: encoding a 512² image and decoding its latent (forward only: latent caching, previews, Try-it). */
function vaeSources(): KernelSource[] {
  const meta = new MetaBackend();
  meta.maxStorageBuffers = DEFAULT_STORAGE;
  meta.recordSources = true;
  const L = new Layers(metaWeights(meta, vaeWeightShapes(SD15_VAE)));
  noGrad(() => scope(() => void vaeDecode(L, SD15_VAE, vaeEncode(L, SD15_VAE, empty(meta, [1, 3, 512, 512])).mean)));
  return [...meta.sources].map(([source, name]) => ({ name, source }));
}

/**
 * The largest buffer (after the pool's size-class rounding: what a GPU pool allocates and would
 * refuse past the limit) of encoding one image and one training step of `c`, on a meta device
 * whose binding limit is `limit` (the VAE's slabs and the U-Net's feed-forward chunks follow it).
 */
function largestBuffer(c: TrainConfig, limit: number): number {
  const meta = new MetaBackend();
  meta.maxBindingBytes = limit;
  const run = new MetaRun(meta, SD15, c);
  const r = c.resolution;
  const { mean, logvar } = latentMoments({ config: SD15_VAE, weights: run.vae }, () => empty(meta, [1, 3, r, r]));
  mean.dispose();
  logvar.dispose();
  meta.complete();
  run.step(1).dispose();
  run.dispose();
  return meta.pool().largestBuffer;
}

/** One step of the base settings (256², batch 1) on a meta device binding at most `maxStorageBuffers`: its sources and counts (each measured once). */
const baseStep = (() => {
  const done = new Map<number, { sources: Map<string, string>; pipelines: number; counts: MetaBackend['stats'] }>();
  return (maxStorageBuffers: number) => {
    let r = done.get(maxStorageBuffers);
    if (!r) {
      const meta = new MetaBackend();
      meta.maxStorageBuffers = maxStorageBuffers;
      const run = new MetaRun(meta, SD15, { ...DEFAULT_CONFIG, ...base });
      meta.resetStats();
      meta.recordSources = true;
      run.step(1).dispose();
      run.dispose();
      done.set(maxStorageBuffers, (r = { sources: meta.sources, pipelines: meta.sources.size, counts: meta.stats }));
    }
    return r;
  };
})();

describe('kernel limits on the meta device', () => {
  it('every buffer of SD 1.5 training fits a 128 MiB binding limit at 512² batch 8 and 1024² batch 2', () => {
    const MiB = 2 ** 20;
    const limit = WEBGPU_DEFAULT_LIMITS.maxStorageBufferBindingSize;
    const sizes = ([[512, 8], [1024, 2]] as const).map(([resolution, batchSize]) => {
      const c = { ...DEFAULT_CONFIG, ...base, resolution, batchSize };
      return { resolution, batchSize, limited: largestBuffer(c, limit), free: largestBuffer(c, Infinity) };
    });
    console.log(`largest buffer with a 128 MiB limit: ${sizes.map((x) => `${x.resolution}² batch ${x.batchSize} ${x.limited / MiB} MiB (unlimited: ${x.free / MiB})`).join(', ')}`);
    for (const x of sizes) expect(x.limited, `${x.resolution}² batch ${x.batchSize}`).toBeLessThanOrEqual(limit);
    // Without the limit each of them makes a larger buffer (the VAE unsplit, the feed-forward whole): the split is what fits them.
    for (const x of sizes) expect(x.free).toBeGreaterThan(limit);
  });

  it('with a default device\'s 8 storage buffers, no SD 1.5 training or VAE kernel passes any default limit', () => {
    const sources = [...runSources(DEFAULT_STORAGE), ...vaeSources()];
    expect(sources.length).toBeGreaterThan(80);
    const problems = sources.flatMap((k) => kernelLimitProblems(k.name, k.source, DEFAULT_KERNEL_LIMITS));
    expect(problems).toEqual([]);
    // Every workgroup array was sized (an unknown type would read as NaN and pass unseen).
    for (const k of sources) expect(kernelNeeds(k.source).workgroupBytes, k.name).not.toBeNaN();
  });

  it('the fused kernels a full device runs (9-10 storage buffers) are what the check catches there', () => {
    const over = [...baseStep(Infinity).sources].filter(([src]) => kernelNeeds(src).storageBuffers > DEFAULT_STORAGE);
    const names = new Set(over.map(([, name]) => name));
    const most = Math.max(...over.map(([src]) => kernelNeeds(src).storageBuffers));
    console.log(`full-limit sources past 8 storage buffers: ${over.length} (${[...names].join(', ')}), at most ${most}`);
    expect(names).toEqual(new Set(['attention_backward', 'matmul']));
    expect(most).toBe(10);
  });

  it('the fallbacks\' cost at 256² (batch 1, checkpointing, text encoder trained): pipelines and dispatches', () => {
    const full = baseStep(Infinity);
    const small = baseStep(DEFAULT_STORAGE);
    const n = (x: typeof full, kernel: string) => x.counts.byKernel.get(kernel)?.dispatches ?? 0;
    const line = (x: typeof full) => `${x.pipelines} pipelines, ${x.counts.dispatches} dispatches (attention backward ${n(x, 'attention_backward')}, GEMM ${n(x, 'matmul')})`;
    console.log(`SD 1.5 step at 256², adapter limits: ${line(full)}; 8 storage buffers: ${line(small)}`);
    // The attention backward runs as two dispatches (dQ; dK and dV) and GEMM pairs past 8 bindings alone: nothing else changes.
    expect(n(full, 'attention_backward')).toBeGreaterThan(0);
    expect(n(small, 'attention_backward')).toBe(2 * n(full, 'attention_backward'));
    expect(small.counts.dispatches - full.counts.dispatches).toBe(n(full, 'attention_backward') + n(small, 'matmul') - n(full, 'matmul'));
    expect(small.counts.flops).toBeGreaterThanOrEqual(full.counts.flops);
    // Today's fallback figures as upper bounds (full: 85 pipelines, 1,985 dispatches).
    expect(small.pipelines).toBeLessThanOrEqual(88);
    expect(small.counts.dispatches).toBeLessThanOrEqual(2141);
  });
});
