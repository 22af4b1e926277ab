// The architecture of a single-file SD 1.x checkpoint, read from its tensor shapes; what shapes cannot tell is assumed and said to be.
import type { ClipConfig } from './clip.js';
import { LDM_CLIP_PREFIX, LDM_UNET_PREFIX, LDM_VAE_PREFIX, clipLdmForm, type ClipLdmForm } from './keymap.js';
import { clipConfigFromJson, unetConfigFromJson, vaeConfigFromJson } from './tiny.js';
import type { UNetConfig } from './unet.js';
import type { VaeConfig } from './vae.js';

/** Metadata key under which our own single files (the tiny demo) record their configuration. */
export const CONFIG_METADATA_KEY = 'lorasmith.configs';

/** Prefix of the EMA copy of the U-Net that training checkpoints carry (`model_ema.diffusion_modelinput_blocks00…`). */
export const EMA_PREFIX = 'model_ema.';

/** A missing or mismatched weight, or an architecture this code cannot run: names the file, the tensor and the shapes. */
export class CheckpointMismatchError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'CheckpointMismatchError';
  }
}

/** A configuration value the tensor shapes do not determine, and the convention used for it. */
export interface AssumedValue {
  part: 'U-Net' | 'text encoder' | 'VAE';
  field: 'heads' | 'groups' | 'scalingFactor';
  value: number;
  why: string;
}

/** What a single file holds, as `loadSingleFile` reads it. */
export interface SingleFileInfo {
  unet: UNetConfig;
  clip: ClipConfig;
  vae: VaeConfig;
  /** Values taken from SD 1.x conventions because neither shapes nor metadata give them. */
  assumed: AssumedValue[];
  /** Tensors of the EMA copy (`model_ema.*`), which are not loaded: training uses the main weights. */
  emaTensors: number;
  clipForm: ClipLdmForm;
  /** Storage dtype of the model's weights ('F16', or e.g. 'F16+F32' when mixed). */
  dtype: string;
  /** Sentences for the user: EMA weights skipped, legacy names, assumed values. */
  notes: string[];
}

type Shapes = ReadonlyMap<string, { shape: readonly number[]; dtype?: string }>;

/** Shape look-ups under one key prefix; a missing tensor is an error that names the file and the key. */
class Scope {
  constructor(
    private readonly t: Shapes,
    private readonly prefix: string,
    private readonly file: string,
    private readonly part: string,
  ) {}
  has(k: string): boolean {
    return this.t.has(this.prefix + k);
  }
  shape(k: string): readonly number[] {
    const s = this.t.get(this.prefix + k)?.shape;
    if (!s) this.fail(`lacks ${this.prefix}${k}`);
    return s!;
  }
  /** The keys under the prefix, without it. */
  *keys(): Generator<string> {
    for (const k of this.t.keys()) if (k.startsWith(this.prefix)) yield k.slice(this.prefix.length);
  }
  /** Sorted distinct values of the first capture group of `re` over the keys (without the prefix). */
  indices(re: RegExp): number[] {
    const out = new Set<number>();
    for (const k of this.keys()) {
      const m = re.exec(k);
      if (m) out.add(Number(m[1]));
    }
    return [...out].sort((a, b) => a - b);
  }
  fail(what: string): never {
    throw new CheckpointMismatchError(`${this.file}: cannot load its ${this.part}: it ${what}`);
  }
}

/** Head count and GroupNorm groups from our own metadata, when the file has it. */
interface Declared {
  unetHeads?: number;
  unetGroups?: number;
  clipHeads?: number;
  vaeGroups?: number;
  vaeScaling?: number;
}

function declared(metadata: Record<string, string>, file: string): Declared {
  const own = metadata[CONFIG_METADATA_KEY];
  if (!own) return {};
  try {
    const c = JSON.parse(own) as { unet: Record<string, unknown>; text_encoder: Record<string, unknown>; vae: Record<string, unknown> };
    const u = unetConfigFromJson(c.unet), t = clipConfigFromJson(c.text_encoder), v = vaeConfigFromJson(c.vae);
    return { unetHeads: u.heads, unetGroups: u.groups, clipHeads: t.heads, vaeGroups: v.groups, vaeScaling: v.scalingFactor };
  } catch (e) {
    throw new CheckpointMismatchError(`${file}: the ${CONFIG_METADATA_KEY} metadata is not valid (${(e as Error).message})`);
  }
}

/** SD 1.x conventions for what shapes do not say. */
const SD1_UNET_HEADS = 8;
const SD1_CLIP_HEAD_DIM = 64;
const SD1_GROUPS = 32;
const SD1_VAE_SCALING = 0.18215;

function inferUnet(s: Scope): Omit<UNetConfig, 'heads' | 'groups'> {
  const [c0, inChannels] = s.shape('input_blocks.0.0.weight') as [number, number];
  const outChannels = s.shape('out.2.weight')[0]!;
  const temb = s.shape('time_embed.0.weight')[0]!;
  // input_blocks after conv_in: per level, ResBlocks (each maybe with a transformer as .1), then a downsampler (.0.op).
  const levels: { channels: number[]; attention: boolean[] }[] = [{ channels: [], attention: [] }];
  for (const i of s.indices(/^input_blocks\.(\d+)\./).filter((i) => i > 0)) {
    if (s.has(`input_blocks.${i}.0.op.weight`)) levels.push({ channels: [], attention: [] });
    else {
      const lvl = levels.at(-1)!;
      lvl.channels.push(s.shape(`input_blocks.${i}.0.out_layers.3.weight`)[0]!);
      lvl.attention.push(s.has(`input_blocks.${i}.1.proj_in.weight`));
    }
  }
  const layersPerBlock = levels[0]!.channels.length;
  if (!layersPerBlock) s.fail('has no ResBlocks in input_blocks');
  levels.forEach((l, i) => {
    if (l.channels.length !== layersPerBlock) s.fail(`has ${l.channels.length} ResBlocks at level ${i} but ${layersPerBlock} at level 0 (one count for every level is supported)`);
    if (new Set(l.channels).size > 1) s.fail(`has ResBlocks of different widths (${l.channels.join(', ')}) within level ${i}`);
    if (new Set(l.attention).size > 1) s.fail(`has attention after some ResBlocks of level ${i} but not others`);
  });
  if (!s.has('middle_block.1.proj_in.weight')) s.fail('has no transformer in its middle block (middle_block.1)');
  // The up path mirrors the down path: one more ResBlock per level, transformers at the same levels.
  const outBlocks = s.indices(/^output_blocks\.(\d+)\./);
  if (outBlocks.length !== levels.length * (layersPerBlock + 1)) s.fail(`has ${outBlocks.length} output blocks where ${levels.length} levels of ${layersPerBlock} ResBlocks need ${levels.length * (layersPerBlock + 1)}`);
  for (const b of outBlocks) {
    const level = levels.length - 1 - Math.floor(b / (layersPerBlock + 1));
    if (s.has(`output_blocks.${b}.1.proj_in.weight`) !== levels[level]!.attention[0])
      s.fail(`has ${levels[level]!.attention[0] ? 'no ' : ''}attention in output block ${b} but ${levels[level]!.attention[0] ? '' : 'none '}at down level ${level}`);
  }

  const depths = new Map<string, Set<number>>();
  let context: number | undefined;
  const tb = /^((?:input_blocks\.\d+|middle_block|output_blocks\.\d+)\.\d+)\.transformer_blocks\.(\d+)\./;
  for (const k of s.keys()) {
    const m = tb.exec(k);
    if (!m) continue;
    depths.set(m[1]!, (depths.get(m[1]!) ?? new Set()).add(Number(m[2])));
    if (k.endsWith('.attn2.to_k.weight')) {
      const ctx = s.shape(k)[1]!;
      if (context !== undefined && ctx !== context) s.fail(`cross-attends to contexts of ${context} and ${ctx} channels`);
      context = ctx;
    }
  }
  const depthSet = new Set([...depths.values()].map((d) => d.size));
  if (depthSet.size > 1) s.fail(`has transformers of different depths (${[...depthSet].join(', ')} blocks; one depth everywhere is supported)`);
  const depth = [...depthSet][0] ?? 1;
  if (context === undefined) s.fail('has no cross-attention (attn2.to_k)');
  if (s.shape('middle_block.1.proj_in.weight').length !== 4) s.fail('projects into its transformers with a Linear (as SD 2.x does), not the 1x1 conv of SD 1.x');

  const cfg: Omit<UNetConfig, 'heads' | 'groups'> = {
    inChannels,
    outChannels,
    blockChannels: levels.map((l) => l.channels[0]!),
    layersPerBlock,
    attentionLevels: levels.map((l) => l.attention[0]!),
    crossAttentionDim: context!,
  };
  if (cfg.blockChannels[0] !== c0) s.fail(`starts with conv_in of ${c0} channels but its first level has ${cfg.blockChannels[0]}`);
  if (depth !== 1) cfg.transformerDepth = depth;
  if (temb !== 4 * c0) cfg.timeEmbedDim = temb;
  return cfg;
}

function inferClip(s: Scope): Omit<ClipConfig, 'heads'> {
  const [vocabSize, width] = s.shape('embeddings.token_embedding.weight') as [number, number];
  const maxPositions = s.shape('embeddings.position_embedding.weight')[0]!;
  const layerIds = s.indices(/^encoder\.layers\.(\d+)\./);
  if (!layerIds.length) s.fail('has no encoder layers');
  if (layerIds.at(-1)! + 1 !== layerIds.length) s.fail(`has encoder layers numbered ${layerIds.join(', ')} (a gap)`);
  return { vocabSize, maxPositions, width, layers: layerIds.length, mlp: s.shape('encoder.layers.0.mlp.fc1.weight')[0]! };
}

function inferVae(s: Scope): Omit<VaeConfig, 'groups' | 'scalingFactor'> {
  const inChannels = s.shape('encoder.conv_in.weight')[1]!;
  const levels = s.indices(/^encoder\.down\.(\d+)\./);
  if (!levels.length) s.fail('has no encoder levels (encoder.down.N)');
  const blocks = levels.map((i) => s.indices(new RegExp(`^encoder\\.down\\.${i}\\.block\\.(\\d+)\\.`)));
  const layersPerBlock = blocks[0]!.length;
  blocks.forEach((b, i) => {
    if (b.length !== layersPerBlock) s.fail(`has ${b.length} ResBlocks at encoder level ${i} but ${layersPerBlock} at level 0`);
  });
  const decoderBlocks = s.indices(/^decoder\.up\.0\.block\.(\d+)\./).length;
  if (decoderBlocks !== layersPerBlock + 1) s.fail(`has ${decoderBlocks} ResBlocks per decoder level for ${layersPerBlock} per encoder level (SD's VAE has one more in the decoder)`);
  return {
    inChannels,
    latentChannels: s.shape('decoder.conv_in.weight')[1]!,
    blockChannels: levels.map((i) => s.shape(`encoder.down.${i}.block.${layersPerBlock - 1}.conv2.weight`)[0]!),
    layersPerBlock,
  };
}

/** The storage dtypes among the model's tensors, e.g. 'F16' or 'F16+F32'. */
function dtypeSummary(t: Shapes): string {
  const seen = new Set<string>();
  for (const [k, v] of t) if (v.dtype && (k.startsWith(LDM_UNET_PREFIX) || k.startsWith(LDM_CLIP_PREFIX) || k.startsWith(LDM_VAE_PREFIX)) && !k.endsWith('position_ids')) seen.add(v.dtype);
  return [...seen].sort().join('+') || 'unknown';
}

/**
 * The U-Net, text-encoder and VAE configurations of an SD 1.x single file (LDM names), as
 * ComfyUI's model detection does: channels per level and ResBlocks per level from the input
 * blocks, attention levels from where transformers are, transformer depth from their block
 * indices, context width from cross-attention, the text encoder's sizes from its embeddings and
 * layers, the VAE's from its encoder. Head counts, GroupNorm groups and the latent scaling are
 * not in the shapes: they come from this project's metadata when the file has it, else from SD
 * 1.x conventions (U-Net 8 heads, CLIP width/64, 32 groups, 0.18215), listed in `assumed`.
 */
export function inferSingleFileConfigs(tensors: Shapes, metadata: Record<string, string> = {}, file = 'the file'): SingleFileInfo {
  const d = declared(metadata, file);
  const clipForm = clipLdmForm(tensors.keys());
  const u = new Scope(tensors, LDM_UNET_PREFIX, file, 'U-Net');
  const t = new Scope(tensors, LDM_CLIP_PREFIX + (clipForm === 'text_model' ? 'text_model.' : ''), file, 'text encoder');
  const v = new Scope(tensors, LDM_VAE_PREFIX, file, 'VAE');
  const assumed: AssumedValue[] = [];
  const pick = (given: number | undefined, part: AssumedValue['part'], field: AssumedValue['field'], value: number, why: string): number => {
    if (given !== undefined) return given;
    assumed.push({ part, field, value, why });
    return value;
  };

  const unetShape = inferUnet(u);
  const unet: UNetConfig = {
    ...unetShape,
    heads: pick(d.unetHeads, 'U-Net', 'heads', SD1_UNET_HEADS, 'SD 1.x uses 8 attention heads at every level'),
    groups: pick(d.unetGroups, 'U-Net', 'groups', SD1_GROUPS, 'SD 1.x GroupNorms have 32 groups'),
  };
  const clipShape = inferClip(t);
  if (d.clipHeads === undefined && clipShape.width % SD1_CLIP_HEAD_DIM) t.fail(`is ${clipShape.width} wide, not a multiple of CLIP's 64-channel heads, and the file does not say how many heads it has`);
  const clip: ClipConfig = { ...clipShape, heads: pick(d.clipHeads, 'text encoder', 'heads', clipShape.width / SD1_CLIP_HEAD_DIM, 'CLIP text encoders use 64 channels per head') };
  const vae: VaeConfig = {
    ...inferVae(v),
    groups: pick(d.vaeGroups, 'VAE', 'groups', SD1_GROUPS, 'SD 1.x GroupNorms have 32 groups'),
    scalingFactor: pick(d.vaeScaling, 'VAE', 'scalingFactor', SD1_VAE_SCALING, 'the SD 1.x latent scaling factor'),
  };
  checkConsistent(unet, clip, vae, u, t, v);

  const emaTensors = [...tensors.keys()].filter((k) => k.startsWith(EMA_PREFIX) && k !== 'model_ema.decay' && k !== 'model_ema.num_updates').length;
  const notes: string[] = [];
  if (emaTensors) notes.push(`The file also holds EMA weights (${emaTensors} tensors under ${EMA_PREFIX}); training uses the main weights (${LDM_UNET_PREFIX}*), as kohya and A1111 do.`);
  if (clipForm === 'legacy') notes.push(`The text encoder uses the older key names (${LDM_CLIP_PREFIX}* without text_model.).`);
  if (assumed.length) notes.push(`Not in the file, assumed from SD 1.x conventions: ${assumed.map((a) => `${a.part} ${a.field} ${a.value}`).join(', ')}.`);
  return { unet, clip, vae, assumed, emaTensors, clipForm, dtype: dtypeSummary(tensors), notes };
}

/** The parts must fit together, and the assumed values must divide the widths they split. */
function checkConsistent(unet: UNetConfig, clip: ClipConfig, vae: VaeConfig, u: Scope, t: Scope, v: Scope): void {
  if (unet.crossAttentionDim !== clip.width) u.fail(`cross-attends to a ${unet.crossAttentionDim}-channel context but the text encoder is ${clip.width} wide`);
  if (vae.latentChannels !== unet.inChannels) v.fail(`makes ${vae.latentChannels}-channel latents but the U-Net takes ${unet.inChannels} channels`);
  unet.blockChannels.forEach((ch, i) => {
    if (ch % unet.groups) u.fail(`has ${ch} channels at level ${i}, not divisible into ${unet.groups} GroupNorm groups`);
    if (unet.attentionLevels[i] && ch % unet.heads) u.fail(`has ${ch} channels at level ${i}, not divisible into ${unet.heads} attention heads`);
  });
  if (unet.blockChannels.at(-1)! % unet.heads) u.fail(`has ${unet.blockChannels.at(-1)} channels in its middle block, not divisible into ${unet.heads} attention heads`);
  if (clip.width % clip.heads) t.fail(`is ${clip.width} wide, not divisible into ${clip.heads} heads`);
  for (const ch of vae.blockChannels) if (ch % vae.groups) v.fail(`has ${ch} channels, not divisible into ${vae.groups} GroupNorm groups`);
}
