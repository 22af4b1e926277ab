// Checkpoint key names between the single-file (LDM) layout and diffusers, for the U-Net, VAE and CLIP, derived from the model configs.

/** What the U-Net key map needs of a configuration (`UNetConfig` satisfies it). */
export interface UnetKeyConfig {
  /** Channels per level (SD 1.x: 320, 640, 1280, 1280); only the count matters here. */
  blockChannels: readonly number[];
  /** ResBlocks per down level; up levels have one more. */
  layersPerBlock: number;
  /** Whether each down level has transformers (SD 1.x: all but the last). */
  attentionLevels: readonly boolean[];
}

/** What the VAE key map needs of a configuration (`VaeConfig` satisfies it). */
export interface VaeKeyConfig {
  blockChannels: readonly number[];
  /** ResBlocks per encoder level; decoder levels have one more. */
  layersPerBlock: number;
}

export const LDM_UNET_PREFIX = 'model.diffusion_model.';
export const LDM_VAE_PREFIX = 'first_stage_model.';
export const LDM_CLIP_PREFIX = 'cond_stage_model.transformer.';

/** How the names inside a module differ between the layouts: pairs of [diffusers, LDM] prefixes, identical names ('same'), or only `weight`/`bias` ('param'). */
type InnerNames = readonly (readonly [string, string])[] | 'same' | 'param';

const UNET_RESNET: InnerNames = [
  ['norm1', 'in_layers.0'],
  ['conv1', 'in_layers.2'],
  ['time_emb_proj', 'emb_layers.1'],
  ['norm2', 'out_layers.0'],
  ['conv2', 'out_layers.3'],
  ['conv_shortcut', 'skip_connection'],
];
const VAE_RESNET: InnerNames = [['norm1', 'norm1'], ['conv1', 'conv1'], ['norm2', 'norm2'], ['conv2', 'conv2'], ['conv_shortcut', 'nin_shortcut']];
const VAE_ATTENTION: InnerNames = [['group_norm', 'norm'], ['to_q', 'q'], ['to_k', 'k'], ['to_v', 'v'], ['to_out.0', 'proj_out']];
/** diffusers VAE files saved before 2023 (many published SD 1.x repositories) use these names. */
const VAE_ATTENTION_LEGACY: readonly (readonly [string, string])[] = [['query', 'to_q'], ['key', 'to_k'], ['value', 'to_v'], ['proj_attn', 'to_out.0']];

/** One module in both layouts (full key prefixes, without the trailing dot). */
interface Row {
  diffusers: string;
  ldm: string;
  inner: InnerNames;
}

/** Every module of a component in both layouts, looked up by the longest matching key prefix. */
class ModuleTable {
  private readonly byDiffusers = new Map<string, Row>();
  private readonly byLdm = new Map<string, Row>();

  constructor(
    readonly what: string,
    rows: Row[],
  ) {
    for (const r of rows) {
      this.byDiffusers.set(r.diffusers, r);
      this.byLdm.set(r.ldm, r);
    }
  }

  map(key: string, from: 'diffusers' | 'ldm'): string | null {
    const table = from === 'diffusers' ? this.byDiffusers : this.byLdm;
    for (let dot = key.lastIndexOf('.'); dot > 0; dot = key.lastIndexOf('.', dot - 1)) {
      const row = table.get(key.slice(0, dot));
      if (!row) continue;
      const inner = mapInner(row.inner, key.slice(dot + 1), from);
      return inner === null ? null : `${from === 'diffusers' ? row.ldm : row.diffusers}.${inner}`;
    }
    return null;
  }
}

function mapInner(names: InnerNames, rest: string, from: 'diffusers' | 'ldm'): string | null {
  if (names === 'same') return rest;
  if (names === 'param') return rest === 'weight' || rest === 'bias' ? rest : null;
  for (const [d, l] of names) {
    const [src, dst] = from === 'diffusers' ? [d, l] : [l, d];
    if (rest.startsWith(src + '.')) return dst + rest.slice(src.length);
  }
  return null;
}

const cached = new Map<string, ModuleTable>();
function memo(id: string, build: () => ModuleTable): ModuleTable {
  let t = cached.get(id);
  if (!t) cached.set(id, (t = build()));
  return t;
}

function describeUnet(c: UnetKeyConfig): string {
  return `an SD 1.x-shaped U-Net with ${c.blockChannels.length} levels, ${c.layersPerBlock} ResBlocks per level, attention at [${c.attentionLevels.join(', ')}]`;
}

/**
 * The U-Net's modules. LDM numbers `input_blocks` 0 (conv_in), then per level L ResBlocks
 * (with their transformer as `.1`) and a downsampler; `output_blocks` per level L+1 ResBlocks,
 * the last followed by the upsampler (`.1`, or `.2` after a transformer).
 */
function unetTable(c: UnetKeyConfig): ModuleTable {
  const n = c.blockChannels.length;
  const L = c.layersPerBlock;
  if (c.attentionLevels.length !== n) throw new Error(`U-Net key map: ${c.attentionLevels.length} attention flags for ${n} levels`);
  return memo(`unet:${n}:${L}:${c.attentionLevels.join()}`, () => {
    const P = LDM_UNET_PREFIX;
    const rows: Row[] = [
      { diffusers: 'time_embedding.linear_1', ldm: `${P}time_embed.0`, inner: 'param' },
      { diffusers: 'time_embedding.linear_2', ldm: `${P}time_embed.2`, inner: 'param' },
      { diffusers: 'conv_in', ldm: `${P}input_blocks.0.0`, inner: 'param' },
      { diffusers: 'mid_block.resnets.0', ldm: `${P}middle_block.0`, inner: UNET_RESNET },
      { diffusers: 'mid_block.attentions.0', ldm: `${P}middle_block.1`, inner: 'same' },
      { diffusers: 'mid_block.resnets.1', ldm: `${P}middle_block.2`, inner: UNET_RESNET },
      { diffusers: 'conv_norm_out', ldm: `${P}out.0`, inner: 'param' },
      { diffusers: 'conv_out', ldm: `${P}out.2`, inner: 'param' },
    ];
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < L; j++) {
        const b = 1 + i * (L + 1) + j;
        rows.push({ diffusers: `down_blocks.${i}.resnets.${j}`, ldm: `${P}input_blocks.${b}.0`, inner: UNET_RESNET });
        if (c.attentionLevels[i]) rows.push({ diffusers: `down_blocks.${i}.attentions.${j}`, ldm: `${P}input_blocks.${b}.1`, inner: 'same' });
      }
      if (i < n - 1) rows.push({ diffusers: `down_blocks.${i}.downsamplers.0.conv`, ldm: `${P}input_blocks.${(i + 1) * (L + 1)}.0.op`, inner: 'param' });
    }
    const upAttention = [...c.attentionLevels].reverse();
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= L; j++) {
        const b = i * (L + 1) + j;
        rows.push({ diffusers: `up_blocks.${i}.resnets.${j}`, ldm: `${P}output_blocks.${b}.0`, inner: UNET_RESNET });
        if (upAttention[i]) rows.push({ diffusers: `up_blocks.${i}.attentions.${j}`, ldm: `${P}output_blocks.${b}.1`, inner: 'same' });
      }
      if (i < n - 1) rows.push({ diffusers: `up_blocks.${i}.upsamplers.0.conv`, ldm: `${P}output_blocks.${i * (L + 1) + L}.${upAttention[i] ? 2 : 1}.conv`, inner: 'param' });
    }
    return new ModuleTable(describeUnet(c), rows);
  });
}

/** The VAE's modules. LDM numbers the decoder's `up` levels from the bottom; diffusers' `up_blocks` from the top. */
function vaeTable(c: VaeKeyConfig): ModuleTable {
  const n = c.blockChannels.length;
  const L = c.layersPerBlock;
  return memo(`vae:${n}:${L}`, () => {
    const P = LDM_VAE_PREFIX;
    const rows: Row[] = [
      { diffusers: 'quant_conv', ldm: `${P}quant_conv`, inner: 'param' },
      { diffusers: 'post_quant_conv', ldm: `${P}post_quant_conv`, inner: 'param' },
    ];
    for (const part of ['encoder', 'decoder']) {
      rows.push(
        { diffusers: `${part}.conv_in`, ldm: `${P}${part}.conv_in`, inner: 'param' },
        { diffusers: `${part}.mid_block.resnets.0`, ldm: `${P}${part}.mid.block_1`, inner: VAE_RESNET },
        { diffusers: `${part}.mid_block.attentions.0`, ldm: `${P}${part}.mid.attn_1`, inner: VAE_ATTENTION },
        { diffusers: `${part}.mid_block.resnets.1`, ldm: `${P}${part}.mid.block_2`, inner: VAE_RESNET },
        { diffusers: `${part}.conv_norm_out`, ldm: `${P}${part}.norm_out`, inner: 'param' },
        { diffusers: `${part}.conv_out`, ldm: `${P}${part}.conv_out`, inner: 'param' },
      );
    }
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < L; j++) rows.push({ diffusers: `encoder.down_blocks.${i}.resnets.${j}`, ldm: `${P}encoder.down.${i}.block.${j}`, inner: VAE_RESNET });
      if (i < n - 1) rows.push({ diffusers: `encoder.down_blocks.${i}.downsamplers.0.conv`, ldm: `${P}encoder.down.${i}.downsample.conv`, inner: 'param' });
      const up = n - 1 - i;
      for (let j = 0; j <= L; j++) rows.push({ diffusers: `decoder.up_blocks.${i}.resnets.${j}`, ldm: `${P}decoder.up.${up}.block.${j}`, inner: VAE_RESNET });
      if (i < n - 1) rows.push({ diffusers: `decoder.up_blocks.${i}.upsamplers.0.conv`, ldm: `${P}decoder.up.${up}.upsample.conv`, inner: 'param' });
    }
    return new ModuleTable(`an SD-shaped VAE with ${n} levels, ${L} ResBlocks per encoder level`, rows);
  });
}

function unmapped(key: string, to: string, table: ModuleTable): never {
  throw new Error(`no ${to} name for "${key}": it is not a weight of ${table.what}`);
}

/** diffusers name of a single-file U-Net key (`model.diffusion_model.input_blocks.1.0.in_layers.0.weight` → `down_blocks.0.resnets.0.norm1.weight`). */
export function ldmToDiffusersUnet(key: string, c: UnetKeyConfig): string {
  const t = unetTable(c);
  return t.map(key, 'ldm') ?? unmapped(key, 'diffusers', t);
}

/** Single-file name (with `model.diffusion_model.`) of a diffusers U-Net key. */
export function diffusersToLdmUnet(key: string, c: UnetKeyConfig): string {
  const t = unetTable(c);
  return t.map(key, 'diffusers') ?? unmapped(key, 'single-file', t);
}

/** Current diffusers VAE names for the pre-2023 mid-attention names (query/key/value/proj_attn). */
export function normalizeVaeDiffusersKey(key: string): string {
  for (const [old, now] of VAE_ATTENTION_LEGACY) {
    const m = `.mid_block.attentions.0.${old}.`;
    if (key.includes(m)) return key.replace(m, `.mid_block.attentions.0.${now}.`);
  }
  return key;
}

/** diffusers name (current form) of a single-file VAE key (`first_stage_model.decoder.up.3.block.0…` → `decoder.up_blocks.0.resnets.0…`). */
export function ldmToDiffusersVae(key: string, c: VaeKeyConfig): string {
  const t = vaeTable(c);
  return t.map(key, 'ldm') ?? unmapped(key, 'diffusers', t);
}

/** Single-file name (with `first_stage_model.`) of a diffusers VAE key, current or pre-2023 form. */
export function diffusersToLdmVae(key: string, c: VaeKeyConfig): string {
  const t = vaeTable(c);
  return t.map(normalizeVaeDiffusersKey(key), 'diffusers') ?? unmapped(key, 'single-file', t);
}

/**
 * Whether a VAE mid-attention projection weight is stored as a 1x1 conv `[C, C, 1, 1]` in the
 * single file while diffusers stores a Linear `[C, C]`: such weights are reshaped when converting.
 * Accepts either layout's name (and diffusers' pre-2023 names).
 */
export function vaeAttentionIsConvInLdm(key: string): boolean {
  return /mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0|query|key|value|proj_attn)\.weight$/.test(key) || /\.mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(key);
}

/** The two single-file forms of the CLIP text encoder's keys. */
export type ClipLdmForm = 'text_model' | 'legacy';

/** Which form a single file uses: `cond_stage_model.transformer.text_model.*`, or the older one without `text_model.`. */
export function clipLdmForm(keys: Iterable<string>): ClipLdmForm {
  for (const k of keys) if (k.startsWith(`${LDM_CLIP_PREFIX}text_model.`)) return 'text_model';
  return 'legacy';
}

/** diffusers name (`text_model.*`) of a single-file CLIP key, in either form. */
export function ldmToDiffusersClip(key: string): string {
  if (!key.startsWith(LDM_CLIP_PREFIX) || key.length === LDM_CLIP_PREFIX.length) throw new Error(`no diffusers name for "${key}": CLIP text-encoder keys start with ${LDM_CLIP_PREFIX}`);
  const rest = key.slice(LDM_CLIP_PREFIX.length);
  return rest.startsWith('text_model.') ? rest : `text_model.${rest}`;
}

/** Single-file name of a diffusers CLIP key (`text_model.*`), in the given form. */
export function diffusersToLdmClip(key: string, form: ClipLdmForm = 'text_model'): string {
  if (!key.startsWith('text_model.')) throw new Error(`no single-file name for "${key}": diffusers CLIP text-encoder keys start with text_model.`);
  return LDM_CLIP_PREFIX + (form === 'text_model' ? key : key.slice('text_model.'.length));
}

/**
 * kohya's LoRA module name: `lora_unet_` or `lora_te_` plus the diffusers module path with dots
 * as underscores (the U-Net path is the diffusers one even for single-file base models).
 */
export function kohyaLoraName(diffusersModulePath: string, part: 'unet' | 'te'): string {
  const p = diffusersModulePath;
  if (!p || /\.(weight|bias)$/.test(p)) throw new Error(`kohyaLoraName: "${p}" is not a module path (give the module, not its weight)`);
  if (part === 'unet' && /^(model\.diffusion_model\.|input_blocks\.|middle_block\.|output_blocks\.)/.test(p))
    throw new Error(`kohyaLoraName: "${p}" is a single-file (LDM) name; kohya names use the diffusers path (see ldmToDiffusersUnet)`);
  if (part === 'te' && !p.startsWith('text_model.')) throw new Error(`kohyaLoraName: text-encoder module paths start with text_model. (got "${p}")`);
  return `lora_${part}_${p.replaceAll('.', '_')}`;
}
