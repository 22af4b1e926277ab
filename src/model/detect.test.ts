import { describe, expect, it } from 'vitest';
import { CheckpointKindError, detectCheckpoint } from './detect.js';

const m = (entries: Record<string, number[]>) => new Map(Object.entries(entries).map(([k, shape]) => [k, { shape }]));
const sd1 = {
  'model.diffusion_model.input_blocks.0.0.weight': [320, 4, 3, 3],
  'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight': [320, 768],
  'first_stage_model.encoder.conv_in.weight': [128, 3, 3, 3],
  'cond_stage_model.transformer.text_model.embeddings.token_embedding.weight': [49408, 768],
};

function refusal(entries: Record<string, number[]>): string {
  try {
    detectCheckpoint(m(entries), 'x.safetensors');
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointKindError);
    return (e as Error).message;
  }
  throw new Error('accepted');
}

describe('detectCheckpoint', () => {
  it('accepts SD 1.x single files and diffusers components', () => {
    expect(detectCheckpoint(m(sd1))).toBe('sd1-single');
    expect(detectCheckpoint(m({ 'conv_in.weight': [320, 4, 3, 3], 'down_blocks.0.attentions.0.proj_in.weight': [320, 320, 1, 1] }))).toBe('sd1-unet');
    expect(detectCheckpoint(m({ 'text_model.encoder.layers.0.mlp.fc1.weight': [3072, 768] }))).toBe('sd1-text-encoder');
  });
  it('names SD 2.x', () => expect(refusal({ ...sd1, 'cond_stage_model.model.token_embedding.weight': [49408, 1024] })).toMatch(/Stable Diffusion 2\.x.*SD 1\.4, 1\.5/));
  it('names SD 2.x by context width', () => expect(refusal({ ...sd1, 'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight': [320, 1024] })).toMatch(/2\.x/));
  it('names SDXL', () => expect(refusal({ 'conditioner.embedders.0.transformer.text_model.x': [1] })).toMatch(/SDXL/));
  it('names SD3', () => expect(refusal({ 'model.diffusion_model.joint_blocks.0.x': [1] })).toMatch(/Stable Diffusion 3/));
  it('names Flux', () => expect(refusal({ 'double_blocks.0.img_attn.qkv.weight': [1] })).toMatch(/Flux/));
  it('names inpainting models', () => expect(refusal({ ...sd1, 'model.diffusion_model.input_blocks.0.0.weight': [320, 9, 3, 3] })).toMatch(/inpainting/));
  it('names a LoRA dropped as a model', () => expect(refusal({ 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight': [16, 320, 1, 1] })).toMatch(/a LoRA/));
  it('names a VAE-only file', () => expect(refusal({ 'encoder.down.0.block.0.conv1.weight': [1], 'decoder.up.0.block.0.conv1.weight': [1] })).toMatch(/VAE on its own/));
  it('names an unknown file', () => expect(refusal({ 'foo.weight': [1] })).toMatch(/unrecognised/));
});
