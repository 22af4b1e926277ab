// The SD 1.x U-Net (diffusers UNet2DConditionModel layout), config-driven so a tiny model shares the code.
import { add, attention, checkpoint, concat, geglu, permute, reshape, scope, silu, split, timestepEmbedding, upsampleNearest2x } from '../engine/index.js';
import type { Tensor } from '../engine/tensor.js';
import { sizeClass } from '../engine/pool.js';
import { addConv, addLinear, addNorm, Layers, type Adapter, type WeightShapes } from './layers.js';

/** The architecture knobs of an SD 1.x-shaped U-Net. */
export interface UNetConfig {
  inChannels: number;
  outChannels: number;
  /** Channels per resolution level (SD 1.x: 320, 640, 1280, 1280). */
  blockChannels: number[];
  /** ResBlocks per down level (up levels have one more). */
  layersPerBlock: number;
  /** Whether each down level has a transformer after each ResBlock (SD 1.x: all but the last). */
  attentionLevels: boolean[];
  /** Attention heads at every level (SD 1.x: 8). */
  heads: number;
  /** Width of the text context (SD 1.x: 768). */
  crossAttentionDim: number;
  /** GroupNorm groups (SD 1.x: 32). */
  groups: number;
  /** Transformer blocks inside each transformer (SD 1.x: 1; diffusers' `transformer_layers_per_block`). */
  transformerDepth?: number;
  /** Width of the time embedding (SD 1.x: 4 x the first level's channels). */
  timeEmbedDim?: number;
}

/** Transformer blocks per transformer (1 unless the configuration says otherwise). */
export const transformerDepth = (c: UNetConfig): number => c.transformerDepth ?? 1;

/** Stable Diffusion 1.x (859.5M parameters). */
export const SD15_UNET: UNetConfig = {
  inChannels: 4,
  outChannels: 4,
  blockChannels: [320, 640, 1280, 1280],
  layersPerBlock: 2,
  attentionLevels: [true, true, true, false],
  heads: 8,
  crossAttentionDim: 768,
  groups: 32,
};

const RES_EPS = 1e-5;
const ATTN_GN_EPS = 1e-6;

/** One ResBlock: names and channels. */
interface ResSpec {
  name: string;
  cin: number;
  cout: number;
}

/** The U-Net as a list of named pieces, from which both the weight shapes and the forward pass are derived. */
interface UNetBlocks {
  down: { resnets: ResSpec[]; attentions: (string | null)[]; downsampler: string | null; channels: number }[];
  up: { resnets: ResSpec[]; attentions: (string | null)[]; upsampler: string | null; channels: number }[];
}

function blocks(c: UNetConfig): UNetBlocks {
  const ch = c.blockChannels;
  const n = ch.length;
  const down: UNetBlocks['down'] = [];
  let cin = ch[0]!;
  for (let i = 0; i < n; i++) {
    const cout = ch[i]!;
    const resnets: ResSpec[] = [];
    const attentions: (string | null)[] = [];
    for (let j = 0; j < c.layersPerBlock; j++) {
      resnets.push({ name: `down_blocks.${i}.resnets.${j}`, cin: j === 0 ? cin : cout, cout });
      attentions.push(c.attentionLevels[i] ? `down_blocks.${i}.attentions.${j}` : null);
    }
    down.push({ resnets, attentions, downsampler: i < n - 1 ? `down_blocks.${i}.downsamplers.0.conv` : null, channels: cout });
    cin = cout;
  }
  const rev = [...ch].reverse();
  const revAttn = [...c.attentionLevels].reverse();
  const up: UNetBlocks['up'] = [];
  let prev = rev[0]!;
  for (let i = 0; i < n; i++) {
    const cout = rev[i]!;
    const input = rev[Math.min(i + 1, n - 1)]!;
    const resnets: ResSpec[] = [];
    const attentions: (string | null)[] = [];
    for (let j = 0; j <= c.layersPerBlock; j++) {
      const skip = j === c.layersPerBlock ? input : cout;
      const rin = j === 0 ? prev : cout;
      resnets.push({ name: `up_blocks.${i}.resnets.${j}`, cin: rin + skip, cout });
      attentions.push(revAttn[i] ? `up_blocks.${i}.attentions.${j}` : null);
    }
    up.push({ resnets, attentions, upsampler: i < n - 1 ? `up_blocks.${i}.upsamplers.0.conv` : null, channels: cout });
    prev = cout;
  }
  return { down, up };
}

function resnetShapes(m: WeightShapes, r: ResSpec, tembDim: number): void {
  addNorm(m, `${r.name}.norm1`, r.cin);
  addConv(m, `${r.name}.conv1`, r.cout, r.cin, 3);
  addLinear(m, `${r.name}.time_emb_proj`, r.cout, tembDim);
  addNorm(m, `${r.name}.norm2`, r.cout);
  addConv(m, `${r.name}.conv2`, r.cout, r.cout, 3);
  if (r.cin !== r.cout) addConv(m, `${r.name}.conv_shortcut`, r.cout, r.cin, 1);
}

function transformerShapes(m: WeightShapes, name: string, c: number, ctx: number, depth: number): void {
  addNorm(m, `${name}.norm`, c);
  addConv(m, `${name}.proj_in`, c, c, 1);
  for (let d = 0; d < depth; d++) {
    const t = `${name}.transformer_blocks.${d}`;
    addNorm(m, `${t}.norm1`, c);
    for (const p of ['to_q', 'to_k', 'to_v']) addLinear(m, `${t}.attn1.${p}`, c, c, false);
    addLinear(m, `${t}.attn1.to_out.0`, c, c);
    addNorm(m, `${t}.norm2`, c);
    addLinear(m, `${t}.attn2.to_q`, c, c, false);
    addLinear(m, `${t}.attn2.to_k`, c, ctx, false);
    addLinear(m, `${t}.attn2.to_v`, c, ctx, false);
    addLinear(m, `${t}.attn2.to_out.0`, c, c);
    addNorm(m, `${t}.norm3`, c);
    addLinear(m, `${t}.ff.net.0.proj`, 8 * c, c);
    addLinear(m, `${t}.ff.net.2`, c, 4 * c);
  }
  addConv(m, `${name}.proj_out`, c, c, 1);
}

/** Every weight of the U-Net by diffusers name, with its shape. */
export function unetWeightShapes(c: UNetConfig): WeightShapes {
  const m: WeightShapes = new Map();
  const c0 = c.blockChannels[0]!;
  const temb = c.timeEmbedDim ?? 4 * c0;
  const depth = transformerDepth(c);
  const p = blocks(c);
  addConv(m, 'conv_in', c0, c.inChannels, 3);
  addLinear(m, 'time_embedding.linear_1', temb, c0);
  addLinear(m, 'time_embedding.linear_2', temb, temb);
  for (const lvl of p.down) {
    lvl.resnets.forEach((r, j) => {
      resnetShapes(m, r, temb);
      const a = lvl.attentions[j];
      if (a) transformerShapes(m, a, r.cout, c.crossAttentionDim, depth);
    });
    if (lvl.downsampler) addConv(m, lvl.downsampler, lvl.channels, lvl.channels, 3);
  }
  const cm = c.blockChannels[c.blockChannels.length - 1]!;
  resnetShapes(m, { name: 'mid_block.resnets.0', cin: cm, cout: cm }, temb);
  transformerShapes(m, 'mid_block.attentions.0', cm, c.crossAttentionDim, depth);
  resnetShapes(m, { name: 'mid_block.resnets.1', cin: cm, cout: cm }, temb);
  for (const lvl of p.up) {
    lvl.resnets.forEach((r, j) => {
      resnetShapes(m, r, temb);
      const a = lvl.attentions[j];
      if (a) transformerShapes(m, a, r.cout, c.crossAttentionDim, depth);
    });
    if (lvl.upsampler) addConv(m, lvl.upsampler, lvl.channels, lvl.channels, 3);
  }
  addNorm(m, 'conv_norm_out', c0);
  addConv(m, 'conv_out', c.outChannels, c0, 3);
  return m;
}

/** Names of the transformer blocks (where kohya's default LoRA targets live). */
export function unetTransformerNames(c: UNetConfig): string[] {
  const p = blocks(c);
  const names: string[] = [];
  for (const l of p.down) for (const a of l.attentions) if (a) names.push(a);
  names.push('mid_block.attentions.0');
  for (const l of p.up) for (const a of l.attentions) if (a) names.push(a);
  return names;
}

export interface UNetOptions {
  /** Recompute each ResBlock and transformer in backward instead of keeping its activations. */
  gradientCheckpointing?: boolean;
  /**
   * The most bytes one buffer may hold and a kernel bind (default: the input's backend's
   * `maxBindingBytes`): a feed-forward whose hidden activation would pass it runs in row chunks.
   */
  maxBindingBytes?: number;
}

/**
 * Predict noise (or v) for latents x [B, in, H, W] at integer timesteps [B] given text context
 * [B, T, crossAttentionDim]. H and W must be divisible by 2^(levels-1).
 */
export function unetForward(L: Layers, c: UNetConfig, x: Tensor, timesteps: readonly number[], context: Tensor, opts: UNetOptions = {}): Tensor {
  const p = blocks(c);
  const c0 = c.blockChannels[0]!;
  // Each block in its own scope: what the tape did not save is freed as the block ends (all of it under noGrad).
  const segment = (fn: (...xs: Tensor[]) => Tensor, xs: Tensor[]) => (opts.gradientCheckpointing ? checkpoint(fn, xs) : scope(() => fn(...xs)));

  const tSin = timestepEmbedding(x.backend, timesteps, c0, { flipSinToCos: true, downscaleFreqShift: 0 });
  // Every ResBlock projects silu(temb): computed once here rather than once per block.
  const temb = silu(L.linear('time_embedding.linear_2', silu(L.linear('time_embedding.linear_1', tSin))));

  // What depends only on the time embedding or the text context is projected here, once, outside
  // the checkpointed blocks, so their recompute does not repeat it: each ResBlock's time projection
  // and each transformer's cross-attention keys and values.
  const crossKv = (attn: string) => Array.from({ length: transformerDepth(c) }, (_, d) => crossAttentionKv(L, `${attn}.transformer_blocks.${d}.attn2`, context)).flat();
  const cm = c.blockChannels[c.blockChannels.length - 1]!;
  const mid = [0, 1].map((i) => ({ name: `mid_block.resnets.${i}`, cin: cm, cout: cm }));
  const tproj = timeProjections(L, [...p.down.flatMap((l) => l.resnets), ...mid, ...p.up.flatMap((l) => l.resnets)], temb, x.shape[0]!);
  const res = (r: ResSpec, a: Tensor) => {
    const t = tproj.get(r.name)!;
    if (!tailFrozen(L, r)) return segment((y, tp) => resnet(L, c, r, y!, tp!), [a, t]);
    // conv2 and the 1x1 shortcut unadapted: their backward reads no activation, so they run after
    // the checkpointed part and are not recomputed in backward.
    return resnetTail(L, r, a, segment((y, tp) => resnetHead(L, c, r, y!, tp!), [a, t]));
  };
  const maxBinding = opts.maxBindingBytes ?? x.backend.maxBindingBytes;
  const attend = (name: string, a: Tensor) => segment((y, ...kv) => transformer(L, c, name, y!, kv, maxBinding), [a, ...crossKv(name)]);

  let h = L.conv('conv_in', x, { padding: 1 });
  const skips: Tensor[] = [h];
  for (const lvl of p.down) {
    lvl.resnets.forEach((r, j) => {
      h = res(r, h);
      const attn = lvl.attentions[j];
      if (attn) h = attend(attn, h);
      skips.push(h);
    });
    if (lvl.downsampler) {
      h = L.conv(lvl.downsampler, h, { stride: 2, padding: 1 });
      skips.push(h);
    }
  }
  h = res(mid[0]!, h);
  h = attend('mid_block.attentions.0', h);
  h = res(mid[1]!, h);
  for (const lvl of p.up) {
    lvl.resnets.forEach((r, j) => {
      h = concat([h, skips.pop()!], 1);
      h = res(r, h);
      const attn = lvl.attentions[j];
      if (attn) h = attend(attn, h);
    });
    if (lvl.upsampler) h = L.conv(lvl.upsampler, upsampleNearest2x(h), { padding: 1 });
  }
  h = L.groupNormSilu('conv_norm_out', h, c.groups, RES_EPS);
  return L.conv('conv_out', h, { padding: 1 });
}

/**
 * ResBlock: GN+SiLU (one fused op) → conv3x3 → + time projection → GN+SiLU → conv3x3, plus the
 * (projected) input. tembSilu: silu of the time embedding [B, temb], shared by every block.
 */
/**
 * The ResBlocks' time projections of silu(temb) [B, temb], by block name: at batch 1 with conv1's
 * bias added, as conv1's per-channel bias [cout]; otherwise [B, cout], added after conv1.
 */
function timeProjections(L: Layers, rs: readonly ResSpec[], tembSilu: Tensor, batch: number): Map<string, Tensor> {
  const names = rs.map((r) => `${r.name}.time_emb_proj`);
  // All read only silu(temb): their GEMMs run two per dispatch.
  if (batch !== 1) return new Map(L.linears(names, tembSilu).map((t, i) => [rs[i]!.name, t]));
  const b1 = rs.map((r) => reshape(L.weights.get(`${r.name}.conv1.bias`), [1, r.cout]));
  return new Map(L.linears(names, tembSilu, b1).map((t, i) => [rs[i]!.name, reshape(t, [rs[i]!.cout])]));
}

/** ResBlock with its time projection t from `timeProjections`. */
function resnet(L: Layers, c: UNetConfig, r: ResSpec, x: Tensor, t: Tensor): Tensor {
  return resnetTail(L, r, x, resnetHead(L, c, r, x, t));
}

/** A ResBlock up to conv2's input: GN+SiLU, conv1 (+ time projection), GN+SiLU. */
function resnetHead(L: Layers, c: UNetConfig, r: ResSpec, x: Tensor, t: Tensor): Tensor {
  const n1 = L.groupNormSilu(`${r.name}.norm1`, x, c.groups, RES_EPS);
  // One sample: the time projection (with conv1's bias in it) is conv1's bias, added in its epilogue.
  const h = t.rank === 1 ? L.conv(`${r.name}.conv1`, n1, { padding: 1 }, t) : add(L.conv(`${r.name}.conv1`, n1, { padding: 1 }), reshape(t, [t.shape[0]!, r.cout, 1, 1]));
  return L.groupNormSilu(`${r.name}.norm2`, h, c.groups, RES_EPS);
}

/** A ResBlock's conv2 on the head's output n2, the (projected) input x added in its epilogue. */
function resnetTail(L: Layers, r: ResSpec, x: Tensor, n2: Tensor): Tensor {
  const skip = r.cin !== r.cout ? L.conv(`${r.name}.conv_shortcut`, x) : x;
  return L.conv(`${r.name}.conv2`, n2, { padding: 1, residual: skip });
}

/** Whether a ResBlock's conv2 and shortcut are certainly not adapted (their backward then needs only their frozen weights). */
function tailFrozen(L: Layers, r: ResSpec): boolean {
  return L.frozen(`${r.name}.conv2`) && (r.cin === r.cout || L.frozen(`${r.name}.conv_shortcut`));
}

/**
 * Transformer2DModel: GN → proj_in → per block self-attn, cross-attn, GEGLU FF (pre-LN, residual)
 * → proj_out → + x. kv: each block's cross-attention keys and values (`crossAttentionKv`), flat.
 */
function transformer(L: Layers, c: UNetConfig, name: string, x: Tensor, kv: readonly Tensor[], maxBinding = Infinity): Tensor {
  const [B, C, H, W] = x.shape as [number, number, number, number];
  const n = L.groupNorm(`${name}.norm`, x, c.groups, ATTN_GN_EPS);
  // One image: proj_in reads the NCHW norm output as [C, H·W] and proj_out writes NCHW (its skip x
  // added), so no layout copy runs; a batch goes through NHWC copies.
  const one = B === 1;
  let h = one ? reshape(L.pointwise(`${name}.proj_in`, reshape(n, [C, H * W]), undefined, { xT: true }), [1, H * W, C]) : L.pointwise(`${name}.proj_in`, reshape(permute(n, [0, 2, 3, 1]), [B, H * W, C]));
  for (let d = 0; d < transformerDepth(c); d++) {
    const t = `${name}.transformer_blocks.${d}`;
    // Each residual add runs in the epilogue of the GEMM that ends its branch.
    h = attentionLayer(L, `${t}.attn1`, L.layerNorm(`${t}.norm1`, h), null, c.heads, false, h);
    h = attentionLayer(L, `${t}.attn2`, L.layerNorm(`${t}.norm2`, h), null, c.heads, false, h, [kv[2 * d]!, kv[2 * d + 1]!]);
    h = feedForward(L, t, h, maxBinding);
  }
  if (one) return reshape(L.pointwise(`${name}.proj_out`, reshape(h, [H * W, C]), reshape(x, [C, H * W]), { yT: true }), [1, C, H, W]);
  h = L.pointwise(`${name}.proj_out`, h);
  // Back to NCHW with the skip x added in the same pass.
  return permute(reshape(h, [B, H, W, C]), [0, 3, 1, 2], x);
}

/**
 * A transformer block's GEGLU feed-forward plus its input, h [B, N, C]. Its hidden activation
 * [B·N, 2·ff] is the U-Net's largest tensor (SD 1.5: 160 MiB at 512² batch 4 or 1024² batch 1,
 * past WebGPU's default 128 MiB binding limit): where it would pass `maxBinding`, the tokens,
 * independent in a feed-forward, run in the fewest row chunks that fit, each chunk's network
 * dropout under its own seed. The same values; weight gradients are summed over the chunks.
 */
function feedForward(L: Layers, t: string, h: Tensor, maxBinding: number): Tensor {
  const ff = (l: Layers, x: Tensor) => l.linear(`${t}.ff.net.2`, geglu(l.linear(`${t}.ff.net.0.proj`, l.layerNorm(`${t}.norm3`, x))), x);
  const hidden = L.weights.get(`${t}.ff.net.0.proj.weight`).shape[0]!;
  const [B, N, C] = h.shape as [number, number, number];
  const rows = B * N;
  let chunks = 1;
  while (chunks < rows && sizeClass(Math.ceil(rows / chunks) * hidden * 4) > maxBinding) chunks++;
  if (chunks === 1) return ff(L, h);
  const per = Math.ceil(rows / chunks);
  const sizes = Array.from({ length: Math.ceil(rows / per) }, (_, i) => Math.min(per, rows - i * per));
  const outs = split(reshape(h, [rows, C]), sizes, 0).map((x, i) => ff(i === 0 ? L : new Layers(L.weights, chunkAdapter(L.adapter, i)), x));
  return reshape(concat(outs, 0), [B, N, C]);
}

/** The adapter for row chunk `i` of a layer: the same, with its network dropout's seed moved so chunks draw independent masks. */
function chunkAdapter(a: Adapter | null, i: number): Adapter | null {
  if (!a) return null;
  const lowRank = (n: string) => {
    const r = a.lowRank(n);
    return r?.dropout ? { ...r, dropout: { ...r.dropout, seed: (r.dropout.seed ^ Math.imul(i, 0x9e3779b1)) >>> 0 } } : r;
  };
  return {
    lowRank,
    convDelta: (n, x, o) => a.convDelta(n, x, o),
    ...(a.weight ? { weight: (n: string, w: Tensor) => a.weight!(n, w) } : {}),
    ...(a.frozen ? { frozen: (n: string) => a.frozen!(n) } : {}),
  };
}

/** Cross-attention's keys and values from the text context [B, T, ctx]. */
export function crossAttentionKv(L: Layers, name: string, context: Tensor): [Tensor, Tensor] {
  return L.linears([`${name}.to_k`, `${name}.to_v`], context) as [Tensor, Tensor];
}

/**
 * Multi-head attention with q from x and k, v from the context (or x itself), or given as `kv`
 * (projected beforehand), plus `residual` when given.
 */
export function attentionLayer(L: Layers, name: string, x: Tensor, context: Tensor | null, heads: number, causal = false, residual?: Tensor, kv?: readonly [Tensor, Tensor]): Tensor {
  const [q, k, v] = (kv ? [L.linear(`${name}.to_q`, x), ...kv] : context ? [L.linear(`${name}.to_q`, x), ...crossAttentionKv(L, name, context)] : L.linears([`${name}.to_q`, `${name}.to_k`, `${name}.to_v`], x)) as [Tensor, Tensor, Tensor];
  return L.linear(`${name}.to_out.0`, attention(q, k, v, { heads, causal }), residual);
}
