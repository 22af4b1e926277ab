import { describe, expect, it } from 'vitest';
import { diffusersToLdmUnet, diffusersToLdmVae, normalizeVaeDiffusersKey } from './keymap.js';
import { SD15_UNET, unetWeightShapes } from './unet.js';
import { SD15_VAE, vaeWeightShapes } from './vae.js';
import { TINY_UNET, TINY_VAE } from './tiny.js';

describe('LDM <-> diffusers key map', () => {
  it('maps the U-Net rows of the reference table', () => {
    const rows: [string, string][] = [
      ['time_embedding.linear_1.weight', 'time_embed.0.weight'],
      ['time_embedding.linear_2.bias', 'time_embed.2.bias'],
      ['conv_in.weight', 'input_blocks.0.0.weight'],
      ['down_blocks.0.resnets.1.conv1.weight', 'input_blocks.2.0.in_layers.2.weight'],
      ['down_blocks.0.attentions.0.proj_in.weight', 'input_blocks.1.1.proj_in.weight'],
      ['down_blocks.0.downsamplers.0.conv.weight', 'input_blocks.3.0.op.weight'],
      ['down_blocks.1.resnets.0.conv_shortcut.weight', 'input_blocks.4.0.skip_connection.weight'],
      ['down_blocks.2.downsamplers.0.conv.bias', 'input_blocks.9.0.op.bias'],
      ['down_blocks.3.resnets.1.time_emb_proj.weight', 'input_blocks.11.0.emb_layers.1.weight'],
      ['mid_block.resnets.0.norm2.weight', 'middle_block.0.out_layers.0.weight'],
      ['mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight', 'middle_block.1.transformer_blocks.0.attn2.to_k.weight'],
      ['mid_block.resnets.1.conv2.weight', 'middle_block.2.out_layers.3.weight'],
      ['up_blocks.0.resnets.2.conv1.weight', 'output_blocks.2.0.in_layers.2.weight'],
      ['up_blocks.0.upsamplers.0.conv.weight', 'output_blocks.2.1.conv.weight'],
      ['up_blocks.1.attentions.2.proj_out.weight', 'output_blocks.5.1.proj_out.weight'],
      ['up_blocks.1.upsamplers.0.conv.weight', 'output_blocks.5.2.conv.weight'],
      ['up_blocks.2.upsamplers.0.conv.weight', 'output_blocks.8.2.conv.weight'],
      ['up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight', 'output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight'],
      ['conv_norm_out.weight', 'out.0.weight'],
      ['conv_out.bias', 'out.2.bias'],
    ];
    for (const [d, l] of rows) expect(diffusersToLdmUnet(d, SD15_UNET)).toBe(l);
  });

  it('is one-to-one over every SD 1.5 and tiny U-Net and VAE key', () => {
    for (const [cfg, shapes] of [[SD15_UNET, unetWeightShapes(SD15_UNET)], [TINY_UNET, unetWeightShapes(TINY_UNET)]] as const) {
      const mapped = [...shapes.keys()].map((k) => diffusersToLdmUnet(k, cfg));
      expect(new Set(mapped).size).toBe(shapes.size);
    }
    for (const [cfg, shapes] of [[SD15_VAE, vaeWeightShapes(SD15_VAE)], [TINY_VAE, vaeWeightShapes(TINY_VAE)]] as const) {
      const mapped = [...shapes.keys()].map((k) => diffusersToLdmVae(k, cfg));
      expect(new Set(mapped).size).toBe(shapes.size);
    }
  });

  it('maps VAE names, reversing decoder levels', () => {
    expect(diffusersToLdmVae('decoder.up_blocks.0.resnets.2.conv1.weight', SD15_VAE)).toBe('decoder.up.3.block.2.conv1.weight');
    expect(diffusersToLdmVae('decoder.up_blocks.2.upsamplers.0.conv.bias', SD15_VAE)).toBe('decoder.up.1.upsample.conv.bias');
    expect(diffusersToLdmVae('encoder.down_blocks.1.resnets.0.conv_shortcut.weight', SD15_VAE)).toBe('encoder.down.1.block.0.nin_shortcut.weight');
    expect(diffusersToLdmVae('encoder.mid_block.attentions.0.to_out.0.weight', SD15_VAE)).toBe('encoder.mid.attn_1.proj_out.weight');
    expect(diffusersToLdmVae('decoder.mid_block.resnets.1.norm1.bias', SD15_VAE)).toBe('decoder.mid.block_2.norm1.bias');
    expect(normalizeVaeDiffusersKey('encoder.mid_block.attentions.0.proj_attn.weight')).toBe('encoder.mid_block.attentions.0.to_out.0.weight');
  });
});
