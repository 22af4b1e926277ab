// detectCheckpoint: which SD 1.x layouts it accepts, and the named refusal of SD 2.x, SDXL, SD3, Flux and inpainting models.
import { describe, expect, it } from 'vitest';
import { clipWeightShapes, SD15_CLIP } from './clip.js';
import { CheckpointKindError, detectCheckpoint, type Expected, type FoundKind } from './detect.js';
import { diffusersToLdmClip, diffusersToLdmUnet, diffusersToLdmVae, vaeAttentionIsConvInLdm } from './keymap.js';
import { TINY_CLIP, TINY_UNET, TINY_VAE } from './tiny.js';
import { SD15_UNET, unetWeightShapes } from './unet.js';
import { SD15_VAE, vaeWeightShapes } from './vae.js';

type Keys = Map<string, { shape: number[] }>;
const m = (entries: Record<string, number[]>): Keys => new Map(Object.entries(entries).map(([k, shape]) => [k, { shape }]));
const withShapes = (shapes: ReadonlyMap<string, number[]>, rename: (k: string) => string = (k) => k, reshape: (k: string, s: number[]) => number[] = (_, s) => s): Keys =>
  new Map([...shapes].map(([k, s]) => [rename(k), { shape: reshape(k, s) }]));

/** Complete key maps built from the configs, in both layouts. */
const sd15 = {
  unet: withShapes(unetWeightShapes(SD15_UNET)),
  te: withShapes(clipWeightShapes(SD15_CLIP)),
  vae: withShapes(vaeWeightShapes(SD15_VAE)),
  single: new Map([
    ...withShapes(unetWeightShapes(SD15_UNET), (k) => diffusersToLdmUnet(k, SD15_UNET)),
    ...withShapes(clipWeightShapes(SD15_CLIP), (k) => diffusersToLdmClip(k)),
    ['cond_stage_model.transformer.text_model.embeddings.position_ids', { shape: [1, 77] }],
    ...withShapes(vaeWeightShapes(SD15_VAE), (k) => diffusersToLdmVae(k, SD15_VAE), (k, s) => (vaeAttentionIsConvInLdm(k) ? [...s, 1, 1] : s)),
  ]) as Keys,
};
const replace = (base: Keys, edits: Record<string, number[]>): Keys => new Map([...base, ...m(edits)]);
const without = (base: Keys, prefix: string): Keys => new Map([...base].filter(([k]) => !k.startsWith(prefix)));

function refusal(keys: Keys, expectKind?: Expected): CheckpointKindError {
  try {
    detectCheckpoint(keys, { file: 'x.safetensors', expect: expectKind });
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointKindError);
    expect((e as Error).message).toMatch(/^x\.safetensors looks like .+\. LoRASmith trains on Stable Diffusion 1\.x models \(SD 1\.4, 1\.5 and their fine-tunes\)/);
    return e as CheckpointKindError;
  }
  throw new Error('accepted');
}
const refused = (keys: Keys, found: FoundKind, message: RegExp, expectKind?: Expected) => {
  const e = refusal(keys, expectKind);
  expect(e.found).toBe(found);
  expect(e.message).toMatch(message);
};

describe('detectCheckpoint accepts SD 1.x', () => {
  it('a single-file checkpoint (current CLIP key form)', () => {
    expect(detectCheckpoint(sd15.single)).toEqual({ kind: 'sd1', layout: 'single-file', component: 'checkpoint', clipForm: 'text_model' });
  });
  it('a single-file checkpoint with the older CLIP keys (no text_model.)', () => {
    const old = new Map([...sd15.single].map(([k, v]) => [k.replace('cond_stage_model.transformer.text_model.', 'cond_stage_model.transformer.'), v]));
    expect(detectCheckpoint(old)).toMatchObject({ kind: 'sd1', clipForm: 'legacy' });
  });
  it('each diffusers component where that component is expected', () => {
    expect(detectCheckpoint(sd15.unet, { expect: 'unet' })).toEqual({ kind: 'sd1', layout: 'diffusers', component: 'unet' });
    expect(detectCheckpoint(sd15.te, { expect: 'text-encoder' })).toEqual({ kind: 'sd1', layout: 'diffusers', component: 'text-encoder' });
    expect(detectCheckpoint(sd15.vae, { expect: 'vae' })).toEqual({ kind: 'sd1', layout: 'diffusers', component: 'vae' });
    const legacyVae = new Map([...sd15.vae].map(([k, v]) => [k.replace('.to_q.', '.query.').replace('.to_out.0.', '.proj_attn.'), v]));
    expect(detectCheckpoint(legacyVae, { expect: 'vae' })).toMatchObject({ component: 'vae' });
  });
  it('the tiny pipeline (its own widths are not mistaken for another family)', () => {
    expect(detectCheckpoint(withShapes(unetWeightShapes(TINY_UNET)), { expect: 'unet' })).toMatchObject({ component: 'unet' });
    expect(detectCheckpoint(withShapes(clipWeightShapes(TINY_CLIP)), { expect: 'text-encoder' })).toMatchObject({ component: 'text-encoder' });
    expect(detectCheckpoint(withShapes(vaeWeightShapes(TINY_VAE)), { expect: 'vae' })).toMatchObject({ component: 'vae' });
  });
});

describe('detectCheckpoint names what it refuses', () => {
  it('SD 2.x by its OpenCLIP text encoder', () => {
    const sd2 = replace(without(sd15.single, 'cond_stage_model.'), { 'cond_stage_model.model.token_embedding.weight': [49408, 1024], 'cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight': [3072, 1024] });
    refused(sd2, 'sd2', /looks like a Stable Diffusion 2\.x model \(OpenCLIP ViT-H text encoder, 1024 wide\)/);
  });
  it('SD 2.x by a 1024-wide cross-attention context (single file and diffusers U-Net)', () => {
    refused(replace(sd15.single, { 'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight': [320, 1024] }), 'sd2', /1024-wide cross-attention context/);
    refused(replace(sd15.unet, { 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight': [320, 1024] }), 'sd2', /Stable Diffusion 2\.x/, 'unet');
    refused(replace(sd15.te, { 'text_model.embeddings.token_embedding.weight': [49408, 1024] }), 'sd2', /2\.x text encoder/, 'text-encoder');
  });
  it('SDXL by conditioner.embedders, label_emb or a 2048-wide context', () => {
    refused(m({ 'conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight': [49408, 768] }), 'sdxl', /an SDXL model/);
    refused(m({ 'model.diffusion_model.label_emb.0.0.weight': [1280, 2816] }), 'sdxl', /SDXL/);
    refused(m({ 'add_embedding.linear_1.weight': [1280, 2816], 'conv_in.weight': [320, 4, 3, 3] }), 'sdxl', /SDXL/, 'unet');
    refused(replace(sd15.unet, { 'mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight': [1280, 2048] }), 'sdxl', /2048-wide/, 'unet');
    refused(m({ 'text_model.embeddings.token_embedding.weight': [49408, 1280], 'text_projection.weight': [1280, 1280] }), 'sdxl', /bigG/, 'text-encoder');
  });
  it('SD3 (joint_blocks, or a diffusers MM-DiT)', () => {
    refused(m({ 'model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight': [4608, 1536] }), 'sd3', /Stable Diffusion 3/);
    refused(m({ 'context_embedder.weight': [1536, 4096], 'transformer_blocks.0.attn.add_q_proj.weight': [1536, 1536] }), 'sd3', /Stable Diffusion 3/);
  });
  it('Flux (double_blocks / single_blocks, or the diffusers form)', () => {
    refused(m({ 'double_blocks.0.img_attn.qkv.weight': [9216, 3072] }), 'flux', /a Flux model/);
    refused(m({ 'model.diffusion_model.single_blocks.0.linear1.weight': [21504, 3072] }), 'flux', /Flux/);
    refused(m({ 'context_embedder.weight': [3072, 4096], 'single_transformer_blocks.0.attn.to_q.weight': [3072, 3072], 'transformer_blocks.0.attn.add_q_proj.weight': [3072, 3072] }), 'flux', /Flux/);
  });
  it('an inpainting model (conv_in with 9 input channels)', () => {
    refused(replace(sd15.single, { 'model.diffusion_model.input_blocks.0.0.weight': [320, 9, 3, 3] }), 'inpainting', /an inpainting model \(a U-Net with 9 input channels/);
    refused(replace(sd15.unet, { 'conv_in.weight': [320, 9, 3, 3] }), 'inpainting', /inpainting/, 'unet');
  });
  it('other input channel counts', () => {
    refused(replace(sd15.single, { 'model.diffusion_model.input_blocks.0.0.weight': [320, 8, 3, 3] }), 'other-input-channels', /a U-Net with 8 input channels \(SD 1\.x has 4/);
  });
  it('a VAE-only file, in either layout', () => {
    refused(sd15.vae, 'vae-only', /looks like a VAE on its own \(no U-Net or text encoder\)/);
    refused(withShapes(vaeWeightShapes(SD15_VAE), (k) => diffusersToLdmVae(k, SD15_VAE).replace('first_stage_model.', '')), 'vae-only', /VAE on its own/);
    refused(without(without(sd15.single, 'model.'), 'cond_stage_model.'), 'vae-only', /VAE on its own/);
  });
  it('a LoRA file (kohya or PEFT names)', () => {
    refused(m({ 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight': [16, 320, 1, 1], 'lora_unet_down_blocks_0_attentions_0_proj_in.alpha': [] }), 'lora', /a LoRA \(it adapts a model; it is not one\)/);
    refused(m({ 'lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight': [3072, 8] }), 'lora', /LoRA/);
    refused(m({ 'unet.down_blocks.0.attentions.0.proj_in.lora_A.weight': [8, 320] }), 'lora', /LoRA/);
  });
  it('a text-encoder-only file, in either layout', () => {
    refused(sd15.te, 'text-encoder-only', /a CLIP text encoder on its own \(no U-Net or VAE\)/);
    refused(withShapes(clipWeightShapes(SD15_CLIP), (k) => diffusersToLdmClip(k)), 'text-encoder-only', /text encoder on its own/);
  });
  it('a U-Net on its own, or a single file missing a part', () => {
    refused(sd15.unet, 'unet-only', /a diffusers U-Net on its own/);
    refused(without(sd15.single, 'first_stage_model.'), 'incomplete', /checkpoint without its VAE \(first_stage_model\.\*\)/);
    refused(without(without(sd15.single, 'first_stage_model.'), 'cond_stage_model.'), 'incomplete', /without its VAE \(first_stage_model\.\*\) and text encoder/);
  });
  it('a component in the wrong folder of a diffusers repository', () => {
    refused(sd15.te, 'wrong-component', /a CLIP text encoder on its own \(no U-Net or VAE\), where a diffusers U-Net \(unet\/\) was expected/, 'unet');
    refused(sd15.single, 'wrong-component', /a whole single-file SD 1\.x checkpoint, where a diffusers VAE \(vae\/\) was expected/, 'vae');
  });
  it('a ControlNet', () => {
    refused(m({ 'control_model.input_hint_block.0.weight': [16, 3, 3, 3] }), 'controlnet', /a ControlNet/);
  });
  it('an empty or unknown file', () => {
    refused(new Map(), 'empty', /an empty safetensors file/);
    refused(m({ 'foo.weight': [1], 'bar.bias': [1] }), 'unknown', /an unrecognised set of 2 tensors .*the first is "foo\.weight"/);
    // A megabyte-long name is quoted cut short, so the page's error line stays a line.
    expect(refusal(m({ ['x'.repeat(1 << 20)]: [1] })).message.length).toBeLessThan(400);
  });
});
