// Test fixtures: SD 1.x-family single-file checkpoints of any configuration, made in memory with seeded random weights.
import { rng } from '../engine/testing/allclose.js';
import { clipWeightShapes, type ClipConfig } from './clip.js';
import { diffusersToLdmClip, diffusersToLdmUnet, diffusersToLdmVae, LDM_CLIP_PREFIX, vaeAttentionIsConvInLdm, type ClipLdmForm } from './keymap.js';
import { writeSafetensors, type TensorToWrite } from './safetensors-write.js';
import { unetWeightShapes, type UNetConfig } from './unet.js';
import { vaeWeightShapes, type VaeConfig } from './vae.js';

export interface Sd1Configs {
  unet: UNetConfig;
  clip: ClipConfig;
  vae: VaeConfig;
}

/**
 * SD1.x-family widths other than SD 1.5's: three levels with attention at the last two, two
 * transformer blocks, a 64-wide text encoder (one 64-channel head) and a four-level VAE, each
 * width a multiple of the 32 GroupNorm groups and 8 heads the loader assumes.
 */
export const NON_DEFAULT_SD1: Sd1Configs = {
  unet: { inChannels: 4, outChannels: 4, blockChannels: [32, 64, 64], layersPerBlock: 1, attentionLevels: [false, true, true], heads: 8, crossAttentionDim: 64, groups: 32, transformerDepth: 2 },
  clip: { vocabSize: 1024, maxPositions: 77, width: 64, layers: 2, heads: 1, mlp: 128 },
  vae: { inChannels: 3, latentChannels: 4, blockChannels: [32, 32, 32, 32], layersPerBlock: 1, groups: 32, scalingFactor: 0.18215 },
};

export interface FixtureOptions {
  dtype?: 'F32' | 'F16' | 'BF16';
  /** Text-encoder key form (default: with `text_model.`). */
  clipForm?: ClipLdmForm;
  /** Write `…embeddings.position_ids` (default true, as most files do). */
  positionIds?: boolean;
  /** Add an EMA copy of the U-Net under `model_ema.` (LDM's dotless names), with decay and num_updates. */
  ema?: boolean;
  metadata?: Record<string, string>;
  seed?: number;
}

/** Every single-file key of a configuration with its shape (no data): what a checkpoint's header lists. */
export function singleFileShapes(c: Sd1Configs, clipForm: ClipLdmForm = 'text_model'): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const [k, s] of unetWeightShapes(c.unet)) out.set(diffusersToLdmUnet(k, c.unet), s);
  for (const [k, s] of clipWeightShapes(c.clip)) out.set(diffusersToLdmClip(k, clipForm), s);
  for (const [k, s] of vaeWeightShapes(c.vae)) out.set(diffusersToLdmVae(k, c.vae), vaeAttentionIsConvInLdm(k) ? [...s, 1, 1] : s);
  return out;
}

/** Deterministic normal numbers: engine/testing's mulberry32 stream, half a step off 0 (log(0) is -inf), through Box-Muller. */
function normals(seed: number): () => number {
  const r = rng(seed);
  const u = () => r() + 0.5 / 4294967296;
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/** Values that keep activations finite: norms near 1, biases small, weights scaled by 1/sqrt(fan-in). */
function values(key: string, shape: readonly number[], rnd: () => number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  const norm = shape.length === 1 && /norm|ln_|layer_norm/.test(key) && key.endsWith('.weight');
  const scale = shape.length === 1 ? 0.02 : 1 / Math.sqrt(fanIn);
  return Float32Array.from({ length: n }, () => (norm ? 1 : 0) + scale * rnd());
}

/** The tensors of a single-file checkpoint of configuration `c`. */
export function singleFileTensors(c: Sd1Configs, o: FixtureOptions = {}): TensorToWrite[] {
  const rnd = normals(o.seed ?? 1);
  const dtype = o.dtype ?? 'F16';
  const out: TensorToWrite[] = [];
  for (const [name, shape] of singleFileShapes(c, o.clipForm)) out.push({ name, dtype, shape, data: values(name, shape, rnd) });
  if (o.positionIds ?? true) {
    const p = `${LDM_CLIP_PREFIX}${(o.clipForm ?? 'text_model') === 'text_model' ? 'text_model.' : ''}embeddings.position_ids`;
    out.push({ name: p, dtype: 'F32', shape: [1, c.clip.maxPositions], data: Float32Array.from({ length: c.clip.maxPositions }, (_, i) => i) });
  }
  if (o.ema) {
    for (const t of out.filter((x) => x.name.startsWith('model.diffusion_model.')))
      out.push({ ...t, name: `model_ema.${t.name.slice('model.'.length).replaceAll('.', '')}`, data: t.data.map((v) => v * 0.5) });
    out.push({ name: 'model_ema.decay', dtype: 'F32', shape: [], data: Float32Array.of(0.9999) });
    out.push({ name: 'model_ema.num_updates', dtype: 'F32', shape: [], data: Float32Array.of(1000) });
  }
  return out;
}

/** A whole single-file checkpoint of configuration `c` as safetensors bytes. */
export function singleFileBytes(c: Sd1Configs, o: FixtureOptions = {}): Uint8Array {
  return writeSafetensors(singleFileTensors(c, o), o.metadata);
}
