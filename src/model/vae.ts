// The SD 1.x VAE (diffusers AutoencoderKL names): encoder to latent mean/log-variance, decoder back to pixels.
import { add, addInto, needsGrad, attention, concat, conv2d, convGeometry, groupNorm, map, permute, reshape, scope, split, upsampleNearest2x, type Conv2dOptions } from '../engine/index.js';
import { sizeClass } from '../engine/pool.js';
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

function encoderLevels(c: VaeConfig) {
  let cin = c.blockChannels[0]!;
  return c.blockChannels.map((cout, i) => {
    const resnets: Res[] = Array.from({ length: c.layersPerBlock }, (_, j) => ({ name: `encoder.down_blocks.${i}.resnets.${j}`, cin: j === 0 ? cin : cout, cout }));
    cin = cout;
    return { resnets, down: i < c.blockChannels.length - 1 ? `encoder.down_blocks.${i}.downsamplers.0.conv` : null };
  });
}

function decoderLevels(c: VaeConfig) {
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
  for (const lvl of encoderLevels(c)) {
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
  for (const lvl of decoderLevels(c)) {
    lvl.resnets.forEach((r) => resShapes(m, r));
    if (lvl.up) addConv(m, lvl.up, lvl.resnets[0]!.cout, lvl.resnets[0]!.cout, 3);
  }
  addNorm(m, 'decoder.conv_norm_out', c0);
  addConv(m, 'decoder.conv_out', c.inChannels, c0, 3);
  return m;
}

/** How the VAE's activations are laid out on the GPU. */
export interface VaeOptions {
  /**
   * The adapter's maxStorageBufferBindingSize. An activation [B, C, H, W] larger than this is held
   * as channel slabs, each within it (at 512x512 the decoder's last upsampler makes 256 MiB, over
   * WebGPU's default 128 MiB). By default the input's backend's `maxBindingBytes`.
   */
  maxBindingBytes?: number;
}

/**
 * An activation [B, C, H, W] as k slabs along C, [B, C/k, H, W] each. Slabs hold whole norm groups
 * (k divides the group count), so group norm, SiLU, upsampling and residual adds work slab by slab
 * and a convolution is a sum of slab convolutions: the result is the unsliced computation's, in
 * another summation order. With one slab every stage is the plain op.
 */
type Slabs = Tensor[];

class Stages {
  constructor(
    private readonly L: Layers,
    private readonly c: VaeConfig,
    private readonly limit: number,
  ) {}

  /** The fewest slabs (a power of two dividing the channels and the groups) that fit the limit. */
  count(shape: readonly number[]): number {
    const [B, C, H, W] = shape as [number, number, number, number];
    const groups = C % this.c.groups === 0 ? this.c.groups : 1;
    for (let k = 1; k <= C && groups % k === 0 && C % k === 0; k *= 2) if (sizeClass(4 * B * (C / k) * H * W) <= this.limit) return k;
    throw new Error(
      `the VAE needs a [${shape}] activation that does not fit this GPU's ${(this.limit / 2 ** 20).toFixed(0)} MiB storage-binding limit even split by channels: lower the resolution`,
    );
  }

  /** Re-slab to k pieces (slab counts are powers of two: split each, or concatenate neighbours). */
  reslab(xs: Slabs, k: number): Slabs {
    if (xs.length === k) return xs;
    if (xs.length < k) return xs.flatMap((x) => split(x, new Array<number>(k / xs.length).fill(x.shape[1]! / (k / xs.length)), 1));
    const m = xs.length / k;
    return Array.from({ length: k }, (_, j) => concat(xs.slice(j * m, (j + 1) * m), 1));
  }

  /** The named convolution over slabs; its output is slabbed to fit. */
  conv(name: string, xs: Slabs, opts: Conv2dOptions = {}): Slabs {
    const w = this.L.weights.get(`${name}.weight`);
    const geo = convGeometry([xs[0]!.shape[0]!, xs.reduce((a, x) => a + x.shape[1]!, 0), ...xs[0]!.shape.slice(2)], w.shape, opts);
    const k = this.count([geo.N, geo.O, geo.OH, geo.OW]);
    if (xs.length === 1 && k === 1) return [this.L.conv(name, xs[0]!, opts)];
    const bias = this.L.weights.has(`${name}.bias`) ? this.L.weights.get(`${name}.bias`) : undefined;
    const even = (n: number, parts: number) => new Array<number>(parts).fill(n / parts);
    const wIn = xs.length === 1 ? [w] : split(w, xs.map((x) => x.shape[1]!), 1);
    const wParts = wIn.map((wi) => (k === 1 ? [wi] : split(wi, even(geo.O, k), 0)));
    const bParts = bias && k > 1 ? split(bias, even(geo.O, k), 0) : [bias];
    return Array.from({ length: k }, (_, j) => {
      let y = conv2d(xs[0]!, wParts[0]![j]!, bParts[j], opts);
      for (let i = 1; i < xs.length; i++) {
        const part = conv2d(xs[i]!, wParts[i]![j]!, undefined, opts);
        // In place when nothing is differentiated (the VAE is frozen): one slab less held.
        if (needsGrad(y) || needsGrad(part)) y = add(y, part);
        else {
          addInto(y, part);
          part.dispose();
        }
      }
      return y;
    });
  }

  /** Group norm then SiLU (one fused op), slab by slab with each slab's share of the groups and affine weights. */
  normSilu(name: string, xs: Slabs): Slabs {
    if (xs.length === 1) return [this.L.groupNormSilu(name, xs[0]!, this.c.groups, EPS)];
    const sizes = xs.map((x) => x.shape[1]!);
    const g = split(this.L.weights.get(`${name}.weight`), sizes, 0);
    const b = split(this.L.weights.get(`${name}.bias`), sizes, 0);
    return xs.map((x, i) => groupNorm(x, this.c.groups / xs.length, g[i]!, b[i]!, EPS, { activation: 'silu' }));
  }

  upsample(xs: Slabs): Slabs {
    const [B, C, H, W] = [xs[0]!.shape[0]!, xs.reduce((a, x) => a + x.shape[1]!, 0), xs[0]!.shape[2]!, xs[0]!.shape[3]!];
    return this.reslab(xs, Math.max(xs.length, this.count([B, C, 2 * H, 2 * W]))).map(upsampleNearest2x);
  }

  resnet(r: Res, xs: Slabs): Slabs {
    const h = this.conv(`${r.name}.conv2`, this.normSilu(`${r.name}.norm2`, this.conv(`${r.name}.conv1`, this.normSilu(`${r.name}.norm1`, xs), { padding: 1 })), { padding: 1 });
    const skip = r.cin !== r.cout ? this.conv(`${r.name}.conv_shortcut`, xs) : this.reslab(xs, h.length);
    return h.map((hj, j) => add(skip[j]!, hj));
  }

  /** Single-head self-attention over the H*W positions, with a residual (at the lowest resolution: one slab). */
  midAttention(name: string, xs: Slabs): Slabs {
    const x = this.reslab(xs, 1)[0]!;
    const [B, C, H, W] = x.shape as [number, number, number, number];
    const L = this.L;
    const t = reshape(permute(L.groupNorm(`${name}.group_norm`, x, this.c.groups, EPS), [0, 2, 3, 1]), [B, H * W, C]);
    const o = L.linear(`${name}.to_out.0`, attention(L.linear(`${name}.to_q`, t), L.linear(`${name}.to_k`, t), L.linear(`${name}.to_v`, t), { heads: 1 }));
    return [add(permute(reshape(o, [B, H, W, C]), [0, 3, 1, 2]), x)];
  }

  mid(prefix: string, h: Slabs): Slabs {
    const ch = this.c.blockChannels[this.c.blockChannels.length - 1]!;
    h = this.resnet({ name: `${prefix}.mid_block.resnets.0`, cin: ch, cout: ch }, h);
    h = this.midAttention(`${prefix}.mid_block.attentions.0`, h);
    return this.resnet({ name: `${prefix}.mid_block.resnets.1`, cin: ch, cout: ch }, h);
  }
}

/**
 * Encode images [B, 3, H, W] in [-1, 1] to the latent distribution: mean and log-variance
 * [B, latent, H/8, W/8] (unscaled; multiply a sample by `scalingFactor`).
 */
export function vaeEncode(L: Layers, c: VaeConfig, x: Tensor, o: VaeOptions = {}): { mean: Tensor; logvar: Tensor } {
  const s = new Stages(L, c, o.maxBindingBytes ?? x.backend.maxBindingBytes);
  const chain = new Chain([x]);
  chain.next((h) => s.conv('encoder.conv_in', h, { padding: 1 }));
  for (const lvl of encoderLevels(c)) {
    for (const r of lvl.resnets) chain.next((h) => s.resnet(r, h));
    // SD's encoder pads right and bottom by one, then a 3x3 stride-2 conv without padding.
    if (lvl.down) chain.next((h) => s.conv(lvl.down!, h, { stride: 2, padding: [0, 1, 0, 1] }));
  }
  chain.next((h) => s.mid('encoder', h));
  const [moments] = chain.next((h) => s.reslab(s.conv('quant_conv', s.conv('encoder.conv_out', s.normSilu('encoder.conv_norm_out', h), { padding: 1 })), 1));
  const [mean, logvar] = split(moments!, [c.latentChannels, c.latentChannels], 1) as [Tensor, Tensor];
  // As diffusers' DiagonalGaussianDistribution: log-variance clamped to [-30, 20] (the encoder is never differentiated).
  return { mean, logvar: map('clamp', [logvar], 'clamp(a, -30.0, 20.0)') };
}

/**
 * A sequence of stages, each in its own scope, dropping the previous stage's output once the next
 * is built: at 512x512 the VAE's full-resolution activations are 128 MiB each, and holding them all
 * to the end would take gigabytes. (Under autograd the tape keeps what backward needs.)
 */
class Chain {
  private h: Slabs;
  constructor(private readonly input: Slabs) {
    this.h = input;
  }
  next(f: (h: Slabs) => Slabs): Slabs {
    const out = scope(() => f(this.h));
    if (this.h !== this.input) for (const t of this.h) t.dispose();
    return (this.h = out);
  }
}

/** Decode latents [B, latent, h, w] (already divided by `scalingFactor`) to images in about [-1, 1]. */
export function vaeDecode(L: Layers, c: VaeConfig, z: Tensor, o: VaeOptions = {}): Tensor {
  const s = new Stages(L, c, o.maxBindingBytes ?? z.backend.maxBindingBytes);
  const chain = new Chain([z]);
  chain.next((h) => s.conv('decoder.conv_in', s.conv('post_quant_conv', h), { padding: 1 }));
  chain.next((h) => s.mid('decoder', h));
  for (const lvl of decoderLevels(c)) {
    for (const r of lvl.resnets) chain.next((h) => s.resnet(r, h));
    if (lvl.up) chain.next((h) => s.conv(lvl.up!, s.upsample(h), { padding: 1 }));
  }
  return chain.next((h) => s.reslab(s.conv('decoder.conv_out', s.normSilu('decoder.conv_norm_out', h), { padding: 1 }), 1))[0]!;
}
