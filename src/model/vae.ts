// The SD 1.x VAE (diffusers AutoencoderKL names): encoder to latent mean/log-variance, decoder back to pixels.
import { add, attention, map, permute, reshape, scope, silu, split, upsampleNearest2x } from '../engine/index.js';
import type { Tensor } from '../engine/tensor.js';
import { addConv, addLinear, addNorm, type Layers, type WeightShapes } from './layers.js';

export interface VaeConfig {
  inChannels: number;
  latentChannels: number;
  /** Channels per level (SD: 128, 256, 512, 512). */
  blockChannels: number[];
  /** ResBlocks per encoder level; the decoder has one more. */
  layersPerBlock: number;
  groups: number;
  scalingFactor: number;
}

export const SD15_VAE: VaeConfig = { inChannels: 3, latentChannels: 4, blockChannels: [128, 256, 512, 512], layersPerBlock: 2, groups: 32, scalingFactor: 0.18215 };

const EPS = 1e-6;

interface Res {
  name: string;
  cin: number;
  cout: number;
}

function encoderPlan(c: VaeConfig) {
  let cin = c.blockChannels[0]!;
  return c.blockChannels.map((cout, i) => {
    const resnets: Res[] = Array.from({ length: c.layersPerBlock }, (_, j) => ({ name: `encoder.down_blocks.${i}.resnets.${j}`, cin: j === 0 ? cin : cout, cout }));
    cin = cout;
    return { resnets, down: i < c.blockChannels.length - 1 ? `encoder.down_blocks.${i}.downsamplers.0.conv` : null };
  });
}

function decoderPlan(c: VaeConfig) {
  const rev = [...c.blockChannels].reverse();
  let prev = rev[0]!;
  return rev.map((cout, i) => {
    const resnets: Res[] = Array.from({ length: c.layersPerBlock + 1 }, (_, j) => ({ name: `decoder.up_blocks.${i}.resnets.${j}`, cin: j === 0 ? prev : cout, cout }));
    prev = cout;
    return { resnets, up: i < rev.length - 1 ? `decoder.up_blocks.${i}.upsamplers.0.conv` : null };
  });
}

function resShapes(m: WeightShapes, r: Res): void {
  addNorm(m, `${r.name}.norm1`, r.cin);
  addConv(m, `${r.name}.conv1`, r.cout, r.cin, 3);
  addNorm(m, `${r.name}.norm2`, r.cout);
  addConv(m, `${r.name}.conv2`, r.cout, r.cout, 3);
  if (r.cin !== r.cout) addConv(m, `${r.name}.conv_shortcut`, r.cout, r.cin, 1);
}

function midShapes(m: WeightShapes, prefix: string, ch: number): void {
  resShapes(m, { name: `${prefix}.mid_block.resnets.0`, cin: ch, cout: ch });
  const a = `${prefix}.mid_block.attentions.0`;
  addNorm(m, `${a}.group_norm`, ch);
  for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0']) addLinear(m, `${a}.${p}`, ch, ch);
  resShapes(m, { name: `${prefix}.mid_block.resnets.1`, cin: ch, cout: ch });
}

/** Every weight by diffusers name with its shape. */
export function vaeWeightShapes(c: VaeConfig): WeightShapes {
  const m: WeightShapes = new Map();
  const c0 = c.blockChannels[0]!;
  const top = c.blockChannels[c.blockChannels.length - 1]!;
  addConv(m, 'encoder.conv_in', c0, c.inChannels, 3);
  for (const lvl of encoderPlan(c)) {
    lvl.resnets.forEach((r) => resShapes(m, r));
    if (lvl.down) addConv(m, lvl.down, lvl.resnets[0]!.cout, lvl.resnets[0]!.cout, 3);
  }
  midShapes(m, 'encoder', top);
  addNorm(m, 'encoder.conv_norm_out', top);
  addConv(m, 'encoder.conv_out', 2 * c.latentChannels, top, 3);
  addConv(m, 'quant_conv', 2 * c.latentChannels, 2 * c.latentChannels, 1);
  addConv(m, 'post_quant_conv', c.latentChannels, c.latentChannels, 1);
  addConv(m, 'decoder.conv_in', top, c.latentChannels, 3);
  midShapes(m, 'decoder', top);
  for (const lvl of decoderPlan(c)) {
    lvl.resnets.forEach((r) => resShapes(m, r));
    if (lvl.up) addConv(m, lvl.up, lvl.resnets[0]!.cout, lvl.resnets[0]!.cout, 3);
  }
  addNorm(m, 'decoder.conv_norm_out', c0);
  addConv(m, 'decoder.conv_out', c.inChannels, c0, 3);
  return m;
}

function resnet(L: Layers, c: VaeConfig, r: Res, x: Tensor): Tensor {
  let h = L.conv(`${r.name}.conv1`, silu(L.groupNorm(`${r.name}.norm1`, x, c.groups, EPS)), { padding: 1 });
  h = L.conv(`${r.name}.conv2`, silu(L.groupNorm(`${r.name}.norm2`, h, c.groups, EPS)), { padding: 1 });
  return add(r.cin !== r.cout ? L.conv(`${r.name}.conv_shortcut`, x) : x, h);
}

/** Single-head self-attention over the H*W positions, with a residual. */
function midAttention(L: Layers, c: VaeConfig, name: string, x: Tensor): Tensor {
  const [B, C, H, W] = x.shape as [number, number, number, number];
  const t = reshape(permute(L.groupNorm(`${name}.group_norm`, x, c.groups, EPS), [0, 2, 3, 1]), [B, H * W, C]);
  const o = L.linear(`${name}.to_out.0`, attention(L.linear(`${name}.to_q`, t), L.linear(`${name}.to_k`, t), L.linear(`${name}.to_v`, t), { heads: 1 }));
  return add(permute(reshape(o, [B, H, W, C]), [0, 3, 1, 2]), x);
}

function mid(L: Layers, c: VaeConfig, prefix: string, h: Tensor): Tensor {
  const ch = c.blockChannels[c.blockChannels.length - 1]!;
  h = resnet(L, c, { name: `${prefix}.mid_block.resnets.0`, cin: ch, cout: ch }, h);
  h = midAttention(L, c, `${prefix}.mid_block.attentions.0`, h);
  return resnet(L, c, { name: `${prefix}.mid_block.resnets.1`, cin: ch, cout: ch }, h);
}

/**
 * Encode images [B, 3, H, W] in [-1, 1] to the latent distribution: mean and log-variance
 * [B, latent, H/8, W/8] (unscaled; multiply a sample by `scalingFactor`).
 */
export function vaeEncode(L: Layers, c: VaeConfig, x: Tensor): { mean: Tensor; logvar: Tensor } {
  const chain = new Chain(x);
  chain.next((h) => L.conv('encoder.conv_in', h, { padding: 1 }));
  for (const lvl of encoderPlan(c)) {
    for (const r of lvl.resnets) chain.next((h) => resnet(L, c, r, h));
    // SD's encoder pads right and bottom by one, then a 3x3 stride-2 conv without padding.
    if (lvl.down) chain.next((h) => L.conv(lvl.down!, h, { stride: 2, padding: [0, 1, 0, 1] }));
  }
  chain.next((h) => mid(L, c, 'encoder', h));
  const moments = chain.next((h) => L.conv('quant_conv', L.conv('encoder.conv_out', silu(L.groupNorm('encoder.conv_norm_out', h, c.groups, EPS)), { padding: 1 })));
  const [mean, logvar] = split(moments, [c.latentChannels, c.latentChannels], 1) as [Tensor, Tensor];
  // As diffusers' DiagonalGaussianDistribution: log-variance clamped to [-30, 20] (the encoder is never differentiated).
  return { mean, logvar: map('clamp', [logvar], 'clamp(a, -30.0, 20.0)') };
}

/**
 * A sequence of stages, each in its own scope, dropping the previous stage's output once the next
 * is built: at 512x512 the VAE's full-resolution activations are 128 MiB each, and holding them all
 * to the end would take gigabytes. (Under autograd the tape keeps what backward needs.)
 */
class Chain {
  constructor(private readonly input: Tensor, private h = input) {}
  next(f: (h: Tensor) => Tensor): Tensor {
    const out = scope(() => f(this.h));
    if (this.h !== this.input) this.h.dispose();
    return (this.h = out);
  }
}

/** Decode latents [B, latent, h, w] (already divided by `scalingFactor`) to images in about [-1, 1]. */
export function vaeDecode(L: Layers, c: VaeConfig, z: Tensor): Tensor {
  const chain = new Chain(z);
  chain.next((h) => L.conv('decoder.conv_in', L.conv('post_quant_conv', h), { padding: 1 }));
  chain.next((h) => mid(L, c, 'decoder', h));
  for (const lvl of decoderPlan(c)) {
    for (const r of lvl.resnets) chain.next((h) => resnet(L, c, r, h));
    if (lvl.up) chain.next((h) => L.conv(lvl.up!, upsampleNearest2x(h), { padding: 1 }));
  }
  return chain.next((h) => L.conv('decoder.conv_out', silu(L.groupNorm('decoder.conv_norm_out', h, c.groups, EPS)), { padding: 1 }));
}
