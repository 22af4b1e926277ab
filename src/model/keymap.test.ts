// Checkpoint key maps: U-Net, VAE and CLIP keys between the single-file (LDM) and diffusers names, round trips and unknown keys.
import { describe, expect, it } from 'vitest';
import { SD15_CLIP, clipWeightShapes } from './clip.js';
import {
  clipLdmForm,
  diffusersToLdmClip,
  diffusersToLdmUnet,
  diffusersToLdmVae,
  kohyaLoraName,
  ldmToDiffusersClip,
  ldmToDiffusersUnet,
  ldmToDiffusersVae,
  normalizeVaeDiffusersKey,
  vaeAttentionIsConvInLdm,
  type UnetKeyConfig,
} from './keymap.js';
import { TINY_CLIP, TINY_UNET, TINY_VAE } from './tiny.js';
import { SD15_UNET, unetWeightShapes } from './unet.js';
import { SD15_VAE, vaeWeightShapes } from './vae.js';

const U = 'model.diffusion_model.';
const V = 'first_stage_model.';
const T = 'cond_stage_model.transformer.';

/** Both directions of one row. */
function both(toLdm: (k: string) => string, toDiffusers: (k: string) => string, rows: [string, string][]): void {
  for (const [d, l] of rows) {
    expect(toLdm(d), d).toBe(l);
    expect(toDiffusers(l), l).toBe(d);
  }
}

describe('U-Net keys', () => {
  const toLdm = (k: string) => diffusersToLdmUnet(k, SD15_UNET);
  const toDiffusers = (k: string) => ldmToDiffusersUnet(k, SD15_UNET);

  it('maps every row of the reference table (SD 1.5)', () => {
    both(toLdm, toDiffusers, [
      ['time_embedding.linear_1.weight', `${U}time_embed.0.weight`],
      ['time_embedding.linear_2.bias', `${U}time_embed.2.bias`],
      ['conv_in.weight', `${U}input_blocks.0.0.weight`],
      ['down_blocks.0.resnets.0.norm1.weight', `${U}input_blocks.1.0.in_layers.0.weight`],
      ['down_blocks.0.resnets.1.conv1.weight', `${U}input_blocks.2.0.in_layers.2.weight`],
      ['down_blocks.0.attentions.0.proj_in.weight', `${U}input_blocks.1.1.proj_in.weight`],
      ['down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q.weight', `${U}input_blocks.2.1.transformer_blocks.0.attn1.to_q.weight`],
      ['down_blocks.0.downsamplers.0.conv.weight', `${U}input_blocks.3.0.op.weight`],
      ['down_blocks.1.resnets.0.conv_shortcut.weight', `${U}input_blocks.4.0.skip_connection.weight`],
      ['down_blocks.1.attentions.1.norm.bias', `${U}input_blocks.5.1.norm.bias`],
      ['down_blocks.1.downsamplers.0.conv.bias', `${U}input_blocks.6.0.op.bias`],
      ['down_blocks.2.resnets.0.time_emb_proj.bias', `${U}input_blocks.7.0.emb_layers.1.bias`],
      ['down_blocks.2.attentions.1.proj_out.weight', `${U}input_blocks.8.1.proj_out.weight`],
      ['down_blocks.2.downsamplers.0.conv.bias', `${U}input_blocks.9.0.op.bias`],
      ['down_blocks.3.resnets.0.norm2.weight', `${U}input_blocks.10.0.out_layers.0.weight`],
      ['down_blocks.3.resnets.1.time_emb_proj.weight', `${U}input_blocks.11.0.emb_layers.1.weight`],
      ['mid_block.resnets.0.norm2.weight', `${U}middle_block.0.out_layers.0.weight`],
      ['mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight', `${U}middle_block.1.transformer_blocks.0.attn2.to_k.weight`],
      ['mid_block.resnets.1.conv2.weight', `${U}middle_block.2.out_layers.3.weight`],
      ['up_blocks.0.resnets.0.conv_shortcut.weight', `${U}output_blocks.0.0.skip_connection.weight`],
      ['up_blocks.0.resnets.2.conv1.weight', `${U}output_blocks.2.0.in_layers.2.weight`],
      ['up_blocks.0.upsamplers.0.conv.weight', `${U}output_blocks.2.1.conv.weight`],
      ['up_blocks.1.resnets.0.norm1.bias', `${U}output_blocks.3.0.in_layers.0.bias`],
      ['up_blocks.1.attentions.2.proj_out.weight', `${U}output_blocks.5.1.proj_out.weight`],
      ['up_blocks.1.upsamplers.0.conv.weight', `${U}output_blocks.5.2.conv.weight`],
      ['up_blocks.2.attentions.0.transformer_blocks.0.norm3.weight', `${U}output_blocks.6.1.transformer_blocks.0.norm3.weight`],
      ['up_blocks.2.upsamplers.0.conv.weight', `${U}output_blocks.8.2.conv.weight`],
      ['up_blocks.3.resnets.2.conv2.bias', `${U}output_blocks.11.0.out_layers.3.bias`],
      ['up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight', `${U}output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight`],
      ['conv_norm_out.weight', `${U}out.0.weight`],
      ['conv_out.bias', `${U}out.2.bias`],
    ]);
  });

  for (const [label, cfg] of [['SD 1.5', SD15_UNET], ['tiny', TINY_UNET]] as const) {
    it(`round-trips every ${label} U-Net key, one to one`, () => {
      const keys = [...unetWeightShapes(cfg).keys()];
      const ldm = keys.map((k) => diffusersToLdmUnet(k, cfg));
      expect(new Set(ldm).size).toBe(keys.length);
      expect(ldm.every((k) => k.startsWith(U))).toBe(true);
      expect(ldm.map((k) => ldmToDiffusersUnet(k, cfg))).toEqual(keys);
    });
  }

  it('SD 1.5 has the 686 U-Net tensors of a real single file, all under the LDM names', () => {
    const ldm = [...unetWeightShapes(SD15_UNET).keys()].map(toLdm);
    expect(ldm.length).toBe(686);
    expect(ldm.filter((k) => /\.op\.weight$/.test(k)).length).toBe(3);
    expect(ldm.filter((k) => /output_blocks\.\d+\.\d\.conv\.weight$/.test(k))).toEqual([`${U}output_blocks.2.1.conv.weight`, `${U}output_blocks.5.2.conv.weight`, `${U}output_blocks.8.2.conv.weight`]);
    expect(ldm.filter((k) => k.endsWith('.proj_in.weight')).length).toBe(16);
  });

  it('follows the config: the tiny U-Net has 3 levels, 1 ResBlock each, attention on the first two', () => {
    const cfg: UnetKeyConfig = { blockChannels: [32, 64, 64], layersPerBlock: 1, attentionLevels: [true, true, false] };
    both((k) => diffusersToLdmUnet(k, cfg), (k) => ldmToDiffusersUnet(k, cfg), [
      ['down_blocks.0.resnets.0.conv1.weight', `${U}input_blocks.1.0.in_layers.2.weight`],
      ['down_blocks.0.attentions.0.proj_in.weight', `${U}input_blocks.1.1.proj_in.weight`],
      ['down_blocks.0.downsamplers.0.conv.weight', `${U}input_blocks.2.0.op.weight`],
      ['down_blocks.1.resnets.0.conv_shortcut.bias', `${U}input_blocks.3.0.skip_connection.bias`],
      ['down_blocks.1.downsamplers.0.conv.weight', `${U}input_blocks.4.0.op.weight`],
      ['down_blocks.2.resnets.0.norm1.weight', `${U}input_blocks.5.0.in_layers.0.weight`],
      ['up_blocks.0.resnets.1.conv2.weight', `${U}output_blocks.1.0.out_layers.3.weight`],
      ['up_blocks.0.upsamplers.0.conv.weight', `${U}output_blocks.1.1.conv.weight`],
      ['up_blocks.1.attentions.1.proj_out.bias', `${U}output_blocks.3.1.proj_out.bias`],
      ['up_blocks.1.upsamplers.0.conv.weight', `${U}output_blocks.3.2.conv.weight`],
      ['up_blocks.2.resnets.1.norm2.weight', `${U}output_blocks.5.0.out_layers.0.weight`],
    ]);
    expect(TINY_UNET).toMatchObject(cfg);
  });

  it('names keys that are not part of the configured U-Net', () => {
    expect(() => toDiffusers(`${U}input_blocks.3.1.proj_in.weight`)).toThrow(`no diffusers name for "${U}input_blocks.3.1.proj_in.weight": it is not a weight of an SD 1.x-shaped U-Net with 4 levels, 2 ResBlocks per level, attention at [true, true, true, false]`);
    expect(() => toDiffusers(`${U}input_blocks.1.0.in_layers.1.weight`)).toThrow(/no diffusers name/);
    expect(() => toDiffusers('model_ema.decay')).toThrow(/no diffusers name/);
    expect(() => toLdm('down_blocks.3.attentions.0.proj_in.weight')).toThrow(/no single-file name for "down_blocks\.3\.attentions\.0\.proj_in\.weight"/);
    expect(() => toLdm('conv_in.weight.extra')).toThrow(/no single-file name/);
    expect(() => diffusersToLdmUnet('conv_in.weight', { ...SD15_UNET, attentionLevels: [true] })).toThrow(/1 attention flags for 4 levels/);
  });
});

describe('VAE keys', () => {
  const toLdm = (k: string) => diffusersToLdmVae(k, SD15_VAE);
  const toDiffusers = (k: string) => ldmToDiffusersVae(k, SD15_VAE);

  it('maps encoder, decoder (levels reversed), mid attention and the quant convs', () => {
    both(toLdm, toDiffusers, [
      ['encoder.conv_in.weight', `${V}encoder.conv_in.weight`],
      ['encoder.down_blocks.0.resnets.1.norm2.bias', `${V}encoder.down.0.block.1.norm2.bias`],
      ['encoder.down_blocks.1.resnets.0.conv_shortcut.weight', `${V}encoder.down.1.block.0.nin_shortcut.weight`],
      ['encoder.down_blocks.2.downsamplers.0.conv.weight', `${V}encoder.down.2.downsample.conv.weight`],
      ['encoder.mid_block.resnets.0.conv1.weight', `${V}encoder.mid.block_1.conv1.weight`],
      ['encoder.mid_block.attentions.0.group_norm.weight', `${V}encoder.mid.attn_1.norm.weight`],
      ['encoder.mid_block.attentions.0.to_q.weight', `${V}encoder.mid.attn_1.q.weight`],
      ['encoder.mid_block.attentions.0.to_k.bias', `${V}encoder.mid.attn_1.k.bias`],
      ['encoder.mid_block.attentions.0.to_v.weight', `${V}encoder.mid.attn_1.v.weight`],
      ['encoder.mid_block.attentions.0.to_out.0.weight', `${V}encoder.mid.attn_1.proj_out.weight`],
      ['encoder.conv_norm_out.weight', `${V}encoder.norm_out.weight`],
      ['quant_conv.weight', `${V}quant_conv.weight`],
      ['post_quant_conv.bias', `${V}post_quant_conv.bias`],
      ['decoder.mid_block.resnets.1.norm1.bias', `${V}decoder.mid.block_2.norm1.bias`],
      ['decoder.up_blocks.0.resnets.2.conv1.weight', `${V}decoder.up.3.block.2.conv1.weight`],
      ['decoder.up_blocks.0.upsamplers.0.conv.weight', `${V}decoder.up.3.upsample.conv.weight`],
      ['decoder.up_blocks.2.resnets.0.conv_shortcut.weight', `${V}decoder.up.1.block.0.nin_shortcut.weight`],
      ['decoder.up_blocks.2.upsamplers.0.conv.bias', `${V}decoder.up.1.upsample.conv.bias`],
      ['decoder.up_blocks.3.resnets.0.norm1.weight', `${V}decoder.up.0.block.0.norm1.weight`],
      ['decoder.conv_out.weight', `${V}decoder.conv_out.weight`],
    ]);
  });

  it("accepts diffusers' pre-2023 mid-attention names", () => {
    expect(toLdm('decoder.mid_block.attentions.0.query.weight')).toBe(`${V}decoder.mid.attn_1.q.weight`);
    expect(toLdm('encoder.mid_block.attentions.0.key.bias')).toBe(`${V}encoder.mid.attn_1.k.bias`);
    expect(toLdm('encoder.mid_block.attentions.0.value.weight')).toBe(`${V}encoder.mid.attn_1.v.weight`);
    expect(toLdm('encoder.mid_block.attentions.0.proj_attn.weight')).toBe(`${V}encoder.mid.attn_1.proj_out.weight`);
    expect(normalizeVaeDiffusersKey('encoder.mid_block.attentions.0.proj_attn.weight')).toBe('encoder.mid_block.attentions.0.to_out.0.weight');
    expect(normalizeVaeDiffusersKey('encoder.down_blocks.0.resnets.0.conv1.weight')).toBe('encoder.down_blocks.0.resnets.0.conv1.weight');
  });

  it('flags the mid-attention projections stored as 1x1 convs in single files', () => {
    const flagged = [...vaeWeightShapes(SD15_VAE).keys()].filter(vaeAttentionIsConvInLdm);
    expect(flagged.sort()).toEqual(['decoder', 'encoder'].flatMap((p) => ['to_k', 'to_out.0', 'to_q', 'to_v'].map((n) => `${p}.mid_block.attentions.0.${n}.weight`)));
    expect(vaeAttentionIsConvInLdm(`${V}encoder.mid.attn_1.proj_out.weight`)).toBe(true);
    expect(vaeAttentionIsConvInLdm('decoder.mid_block.attentions.0.query.weight')).toBe(true);
    expect(vaeAttentionIsConvInLdm(`${V}encoder.mid.attn_1.q.bias`)).toBe(false);
    expect(vaeAttentionIsConvInLdm(`${V}encoder.mid.attn_1.norm.weight`)).toBe(false);
  });

  for (const [label, cfg] of [['SD 1.5', SD15_VAE], ['tiny', TINY_VAE]] as const) {
    it(`round-trips every ${label} VAE key, one to one`, () => {
      const keys = [...vaeWeightShapes(cfg).keys()];
      const ldm = keys.map((k) => diffusersToLdmVae(k, cfg));
      expect(new Set(ldm).size).toBe(keys.length);
      expect(ldm.map((k) => ldmToDiffusersVae(k, cfg))).toEqual(keys);
    });
  }

  it('names keys that are not part of the configured VAE', () => {
    expect(() => toDiffusers(`${V}decoder.up.4.block.0.conv1.weight`)).toThrow(`no diffusers name for "${V}decoder.up.4.block.0.conv1.weight": it is not a weight of an SD-shaped VAE with 4 levels, 2 ResBlocks per encoder level`);
    expect(() => toDiffusers(`${V}encoder.down.3.downsample.conv.weight`)).toThrow(/no diffusers name/);
    expect(() => toLdm('encoder.down_blocks.0.resnets.2.conv1.weight')).toThrow(/no single-file name/);
  });
});

describe('CLIP text-encoder keys', () => {
  it('maps both single-file forms', () => {
    expect(ldmToDiffusersClip(`${T}text_model.encoder.layers.11.mlp.fc2.weight`)).toBe('text_model.encoder.layers.11.mlp.fc2.weight');
    expect(ldmToDiffusersClip(`${T}encoder.layers.0.self_attn.q_proj.bias`)).toBe('text_model.encoder.layers.0.self_attn.q_proj.bias');
    expect(ldmToDiffusersClip(`${T}embeddings.token_embedding.weight`)).toBe('text_model.embeddings.token_embedding.weight');
    expect(diffusersToLdmClip('text_model.final_layer_norm.weight')).toBe(`${T}text_model.final_layer_norm.weight`);
    expect(diffusersToLdmClip('text_model.final_layer_norm.weight', 'legacy')).toBe(`${T}final_layer_norm.weight`);
  });

  it('tells the forms apart', () => {
    expect(clipLdmForm([`${U}conv_in.weight`, `${T}text_model.embeddings.position_ids`])).toBe('text_model');
    expect(clipLdmForm([`${T}embeddings.position_ids`])).toBe('legacy');
  });

  for (const [label, cfg] of [['SD 1.5', SD15_CLIP], ['tiny', TINY_CLIP]] as const) {
    it(`round-trips every ${label} text-encoder key in both forms`, () => {
      const keys = [...clipWeightShapes(cfg).keys()];
      for (const form of ['text_model', 'legacy'] as const) {
        const ldm = keys.map((k) => diffusersToLdmClip(k, form));
        expect(new Set(ldm).size).toBe(keys.length);
        expect(clipLdmForm(ldm)).toBe(form);
        expect(ldm.map(ldmToDiffusersClip)).toEqual(keys);
      }
    });
  }

  it('names keys from elsewhere', () => {
    expect(() => ldmToDiffusersClip('cond_stage_model.model.token_embedding.weight')).toThrow(/CLIP text-encoder keys start with cond_stage_model\.transformer\./);
    expect(() => diffusersToLdmClip('encoder.layers.0.mlp.fc1.weight')).toThrow(/start with text_model\./);
  });
});

describe('kohya LoRA names', () => {
  it('matches the reference examples', () => {
    expect(kohyaLoraName('down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q', 'unet')).toBe('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q');
    expect(kohyaLoraName('mid_block.attentions.0.proj_in', 'unet')).toBe('lora_unet_mid_block_attentions_0_proj_in');
    expect(kohyaLoraName('up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj', 'unet')).toBe('lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_0_proj');
    expect(kohyaLoraName('text_model.encoder.layers.11.mlp.fc2', 'te')).toBe('lora_te_text_model_encoder_layers_11_mlp_fc2');
  });

  it('uses the diffusers path for single-file U-Net modules', () => {
    const ldm = `${U}output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight`;
    const module = ldmToDiffusersUnet(ldm, SD15_UNET).replace(/\.weight$/, '');
    expect(kohyaLoraName(module, 'unet')).toBe('lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_0_proj');
  });

  it('refuses weight names, LDM names and text-encoder paths without text_model.', () => {
    expect(() => kohyaLoraName('mid_block.attentions.0.proj_in.weight', 'unet')).toThrow(/not a module path/);
    expect(() => kohyaLoraName(`${U}middle_block.1.proj_in`, 'unet')).toThrow(/single-file \(LDM\) name/);
    expect(() => kohyaLoraName('input_blocks.1.1.proj_in', 'unet')).toThrow(/single-file \(LDM\) name/);
    expect(() => kohyaLoraName('encoder.layers.0.mlp.fc1', 'te')).toThrow(/start with text_model\./);
  });
});
