// The tiny demo pipeline's architecture: every SD 1.x block kind, small enough for a CPU-emulated GPU.
import type { ClipConfig } from './clip.js';
import type { UNetConfig } from './unet.js';
import type { VaeConfig } from './vae.js';

/**
 * Three levels (attention on the first two, as SD's last level has none), one ResBlock per level
 * (two per up level), so there are ResBlocks with and without shortcut convs, down- and upsamplers,
 * self- and cross-attention. 8x8 latents at 64 px.
 */
export const TINY_UNET: UNetConfig = {
  inChannels: 4,
  outChannels: 4,
  blockChannels: [32, 64, 64],
  layersPerBlock: 1,
  attentionLevels: [true, true, false],
  heads: 2,
  crossAttentionDim: 32,
  groups: 8,
};

/** Two layers, as the issue asks; a vocabulary of its own (see the tiny tokenizer). */
export const TINY_CLIP: ClipConfig = { vocabSize: 1024, maxPositions: 77, width: 32, layers: 2, heads: 2, mlp: 64 };

/** Four levels like SD's VAE, so one latent pixel is 8x8 image pixels. */
export const TINY_VAE: VaeConfig = { inChannels: 3, latentChannels: 4, blockChannels: [8, 16, 32, 32], layersPerBlock: 1, groups: 4, scalingFactor: 0.18215 };

/** The tiny demo's native resolution [pixels]: 8x8 latents through its x8 VAE. */
export const TINY_RESOLUTION = 64;

/** Its training size: the native resolution and the bucket sides the recipe derives there (bucketSideLimits(64, 2, 64)). */
export const TINY_DEMO_SIZE = { resolution: TINY_RESOLUTION, minBucket: 64, maxBucket: 128 } as const;

/**
 * The settings the page starts with, ready for the tiny demo: its size, and a run short enough (200 base
 * steps, 8-step previews) to finish in minutes on a software adapter. The CLI's `--model tiny` takes the size.
 */
export const TINY_DEMO_PRESET = { ...TINY_DEMO_SIZE, baseSteps: 200, sampleSteps: 8 } as const;

/** diffusers-style config.json contents, which loaders (ours and the PyTorch reference) read back. */
export function unetConfigJson(c: UNetConfig): Record<string, unknown> {
  return {
    _class_name: 'UNet2DConditionModel',
    in_channels: c.inChannels,
    out_channels: c.outChannels,
    block_out_channels: c.blockChannels,
    layers_per_block: c.layersPerBlock,
    down_block_types: c.attentionLevels.map((a) => (a ? 'CrossAttnDownBlock2D' : 'DownBlock2D')),
    up_block_types: [...c.attentionLevels].reverse().map((a) => (a ? 'CrossAttnUpBlock2D' : 'UpBlock2D')),
    attention_head_dim: c.heads,
    cross_attention_dim: c.crossAttentionDim,
    norm_num_groups: c.groups,
    norm_eps: 1e-5,
    flip_sin_to_cos: true,
    freq_shift: 0,
    sample_size: 64,
    ...(c.transformerDepth !== undefined && { transformer_layers_per_block: c.transformerDepth }),
    ...(c.timeEmbedDim !== undefined && { time_embedding_dim: c.timeEmbedDim }),
  };
}

export function clipConfigJson(c: ClipConfig): Record<string, unknown> {
  return {
    _class_name: 'CLIPTextModel',
    architectures: ['CLIPTextModel'],
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxPositions,
    hidden_size: c.width,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    intermediate_size: c.mlp,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
    projection_dim: c.width,
  };
}

export function vaeConfigJson(c: VaeConfig): Record<string, unknown> {
  return {
    _class_name: 'AutoencoderKL',
    in_channels: c.inChannels,
    out_channels: c.inChannels,
    latent_channels: c.latentChannels,
    block_out_channels: c.blockChannels,
    layers_per_block: c.layersPerBlock,
    norm_num_groups: c.groups,
    scaling_factor: c.scalingFactor,
    down_block_types: c.blockChannels.map(() => 'DownEncoderBlock2D'),
    up_block_types: c.blockChannels.map(() => 'UpDecoderBlock2D'),
  };
}

/** Read a diffusers config.json back into our configs (SD 1.x keys; anything else is refused by detect). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- config.json fields are read loosely and checked by the loaders
export function unetConfigFromJson(j: Record<string, any>): UNetConfig {
  const heads = j.attention_head_dim;
  return {
    inChannels: j.in_channels ?? 4,
    outChannels: j.out_channels ?? 4,
    blockChannels: j.block_out_channels,
    layersPerBlock: j.layers_per_block ?? 2,
    attentionLevels: (j.down_block_types as string[]).map((t) => t.startsWith('CrossAttn')),
    heads: Array.isArray(heads) ? heads[0] : heads ?? 8,
    crossAttentionDim: j.cross_attention_dim ?? 768,
    groups: j.norm_num_groups ?? 32,
    ...(j.transformer_layers_per_block !== undefined && { transformerDepth: Array.isArray(j.transformer_layers_per_block) ? j.transformer_layers_per_block[0] : j.transformer_layers_per_block }),
    ...(typeof j.time_embedding_dim === 'number' && { timeEmbedDim: j.time_embedding_dim }),
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function clipConfigFromJson(j: Record<string, any>): ClipConfig {
  return {
    vocabSize: j.vocab_size,
    maxPositions: j.max_position_embeddings ?? 77,
    width: j.hidden_size,
    layers: j.num_hidden_layers,
    heads: j.num_attention_heads,
    mlp: j.intermediate_size,
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function vaeConfigFromJson(j: Record<string, any>): VaeConfig {
  return {
    inChannels: j.in_channels ?? 3,
    latentChannels: j.latent_channels ?? 4,
    blockChannels: j.block_out_channels,
    layersPerBlock: j.layers_per_block ?? 2,
    groups: j.norm_num_groups ?? 32,
    scalingFactor: j.scaling_factor ?? 0.18215,
  };
}
