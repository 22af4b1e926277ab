// Key names between the single-file (LDM) layout and diffusers, derived from the model configs.
import type { UNetConfig } from './unet.js';
import type { VaeConfig } from './vae.js';

const RESNET_INNER: [string, string][] = [
  ['norm1', 'in_layers.0'],
  ['conv1', 'in_layers.2'],
  ['time_emb_proj', 'emb_layers.1'],
  ['norm2', 'out_layers.0'],
  ['conv2', 'out_layers.3'],
  ['conv_shortcut', 'skip_connection'],
];

function mapResnet(rest: string): string {
  for (const [d, l] of RESNET_INNER) if (rest === d || rest.startsWith(d + '.')) return l + rest.slice(d.length);
  return rest;
}

/** LDM name (without `model.diffusion_model.`) of a diffusers U-Net key. */
export function diffusersToLdmUnet(key: string, c: UNetConfig): string {
  const L = c.layersPerBlock;
  let m: RegExpExecArray | null;
  if (key.startsWith('conv_in.')) return 'input_blocks.0.0.' + key.slice(8);
  if ((m = /^time_embedding\.linear_([12])\.(.*)$/.exec(key))) return `time_embed.${m[1] === '1' ? 0 : 2}.${m[2]}`;
  if ((m = /^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)$/.exec(key))) {
    const idx = 1 + Number(m[1]) * (L + 1) + Number(m[3]);
    return m[2] === 'resnets' ? `input_blocks.${idx}.0.${mapResnet(m[4]!)}` : `input_blocks.${idx}.1.${m[4]}`;
  }
  if ((m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$/.exec(key))) return `input_blocks.${(Number(m[1]) + 1) * (L + 1)}.0.op.${m[2]}`;
  if ((m = /^mid_block\.resnets\.(\d)\.(.*)$/.exec(key))) return `middle_block.${m[1] === '0' ? 0 : 2}.${mapResnet(m[2]!)}`;
  if ((m = /^mid_block\.attentions\.0\.(.*)$/.exec(key))) return `middle_block.1.${m[1]}`;
  if ((m = /^up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)$/.exec(key))) {
    const idx = Number(m[1]) * (L + 1) + Number(m[3]);
    return m[2] === 'resnets' ? `output_blocks.${idx}.0.${mapResnet(m[4]!)}` : `output_blocks.${idx}.1.${m[4]}`;
  }
  if ((m = /^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$/.exec(key))) {
    const i = Number(m[1]);
    const hasAttn = [...c.attention].reverse()[i];
    return `output_blocks.${i * (L + 1) + L}.${hasAttn ? 2 : 1}.conv.${m[2]}`;
  }
  if (key.startsWith('conv_norm_out.')) return 'out.0.' + key.slice(14);
  if (key.startsWith('conv_out.')) return 'out.2.' + key.slice(9);
  throw new Error(`no LDM name for U-Net key ${key}`);
}

const VAE_RES: [string, string][] = [['conv_shortcut', 'nin_shortcut']];
const VAE_ATTN: Record<string, string> = { group_norm: 'norm', to_q: 'q', to_k: 'k', to_v: 'v', 'to_out.0': 'proj_out' };

/** LDM name (without `first_stage_model.`) of a diffusers VAE key. */
export function diffusersToLdmVae(key: string, c: VaeConfig): string {
  const n = c.blockChannels.length;
  const res = (r: string) => {
    for (const [d, l] of VAE_RES) if (r.startsWith(d + '.')) return l + r.slice(d.length);
    return r;
  };
  let m: RegExpExecArray | null;
  if ((m = /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/.exec(key))) return `encoder.down.${m[1]}.block.${m[2]}.${res(m[3]!)}`;
  if ((m = /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$/.exec(key))) return `encoder.down.${m[1]}.downsample.conv.${m[2]}`;
  if ((m = /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/.exec(key))) return `decoder.up.${n - 1 - Number(m[1])}.block.${m[2]}.${res(m[3]!)}`;
  if ((m = /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$/.exec(key))) return `decoder.up.${n - 1 - Number(m[1])}.upsample.conv.${m[2]}`;
  if ((m = /^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)$/.exec(key))) return `${m[1]}.mid.block_${Number(m[2]) + 1}.${res(m[3]!)}`;
  if ((m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)$/.exec(key))) return `${m[1]}.mid.attn_1.${VAE_ATTN[m[2]!]}.${m[3]}`;
  if ((m = /^(encoder|decoder)\.conv_norm_out\.(.*)$/.exec(key))) return `${m[1]}.norm_out.${m[2]}`;
  return key; // conv_in, conv_out, quant_conv, post_quant_conv keep their names
}

/** Older diffusers VAE files name the mid attention query/key/value/proj_attn. */
export function normalizeVaeDiffusersKey(key: string): string {
  return key.replace(/\.attentions\.0\.query\./, '.attentions.0.to_q.').replace(/\.attentions\.0\.key\./, '.attentions.0.to_k.').replace(/\.attentions\.0\.value\./, '.attentions.0.to_v.').replace(/\.attentions\.0\.proj_attn\./, '.attentions.0.to_out.0.');
}

/** Whether a diffusers VAE key is a mid-attention Linear that LDM stores as a [C, C, 1, 1] conv. */
export function vaeAttentionIsConvInLdm(key: string): boolean {
  return /mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(key);
}

export const LDM_UNET_PREFIX = 'model.diffusion_model.';
export const LDM_VAE_PREFIX = 'first_stage_model.';
export const LDM_CLIP_PREFIXES = ['cond_stage_model.transformer.', 'cond_stage_model.transformer.text_model.'];

/** LDM name of a diffusers CLIP key (`text_model.*`), in the current form with `text_model.`. */
export function diffusersToLdmClip(key: string): string {
  return 'cond_stage_model.transformer.' + key;
}
