// What a checkpoint file is, from its tensor names and shapes alone; anything but SD 1.x is refused by name.
import { clip } from './byte-source.js';
import { LDM_CLIP_PREFIX, LDM_UNET_PREFIX, LDM_VAE_PREFIX, clipLdmForm, type ClipLdmForm } from './keymap.js';

/** An SD 1.x file we can load: a whole single-file checkpoint, or one component of a diffusers repository. */
export type Sd1Checkpoint =
  | { kind: 'sd1'; layout: 'single-file'; component: 'checkpoint'; clipForm: ClipLdmForm }
  | { kind: 'sd1'; layout: 'diffusers'; component: 'unet' | 'text-encoder' | 'vae' };

/** What a refused file was recognised as. */
export type FoundKind =
  | 'empty'
  | 'lora'
  | 'sd2'
  | 'sdxl'
  | 'sd3'
  | 'flux'
  | 'controlnet'
  | 'inpainting'
  | 'other-input-channels'
  | 'unet-only'
  | 'vae-only'
  | 'text-encoder-only'
  | 'incomplete'
  | 'wrong-component'
  | 'unknown';

/** What the caller is loading: a whole model from one file, or one folder of a diffusers repository. */
export type Expected = 'checkpoint' | 'unet' | 'text-encoder' | 'vae';

const SUPPORTED = 'LoRASmith trains on Stable Diffusion 1.x models (SD 1.4, 1.5 and their fine-tunes): a single-file .safetensors checkpoint or a diffusers repository.';

/** A file that is not the SD 1.x model (or component) asked for: the message says what it is and what is supported. */
export class CheckpointKindError extends Error {
  constructor(
    readonly found: FoundKind,
    readonly file: string,
    description: string,
  ) {
    super(`${file} looks like ${description}. ${SUPPORTED}`);
    this.name = 'CheckpointKindError';
  }
}

type Shapes = ReadonlyMap<string, { shape: readonly number[] }>;

class Keys {
  constructor(private readonly t: Shapes) {}
  has(re: RegExp): boolean {
    for (const k of this.t.keys()) if (re.test(k)) return true;
    return false;
  }
  hasPrefix(prefix: string): boolean {
    for (const k of this.t.keys()) if (k.startsWith(prefix)) return true;
    return false;
  }
  shapes(re: RegExp): (readonly number[])[] {
    return [...this.t].filter(([k]) => re.test(k)).map(([, v]) => v.shape);
  }
  shape(re: RegExp): readonly number[] | undefined {
    for (const [k, v] of this.t) if (re.test(k)) return v.shape;
    return undefined;
  }
}

/** Families that share nothing with SD 1.x, recognised by their own module names. */
function otherFamily(k: Keys): [FoundKind, string] | null {
  if (k.has(/^lora_(unet|te\d?)_/) || k.has(/\.(lora_down|lora_up|lora_A|lora_B|hada_w1_a|lokr_w1)(\.weight)?$/))
    return ['lora', 'a LoRA (it adapts a model; it is not one): pick an SD 1.x base model, and load this file as a LoRA to resume training'];
  if (k.has(/^conditioner\.embedders\./) || k.has(/(^|\.)add_embedding\.linear_1\./) || k.has(/^model\.diffusion_model\.label_emb\./))
    return ['sdxl', 'an SDXL model (two text encoders, 2048-wide text context)'];
  if (k.has(/(^|\.)double_blocks\.\d+\./) || k.has(/(^|\.)single_transformer_blocks\.\d+\./) || k.has(/(^|\.)single_blocks\.\d+\./))
    return ['flux', 'a Flux model (a transformer, not a U-Net)'];
  if (k.has(/(^|\.)joint_blocks\.\d+\./) || (k.has(/(^|\.)context_embedder\./) && k.has(/(^|\.)transformer_blocks\.\d+\.attn\.add_q_proj\./)))
    return ['sd3', 'a Stable Diffusion 3 model (an MM-DiT transformer, not a U-Net)'];
  if (k.has(/^control_model\./) || k.has(/(^|\.)controlnet_cond_embedding\./) || k.has(/(^|\.)input_hint_block\./))
    return ['controlnet', 'a ControlNet (it guides a model; it is not one)'];
  return null;
}

/** SD 2.x and SDXL share SD 1.x's block names; their text width gives them away. */
function wrongWidth(k: Keys): [FoundKind, string] | null {
  if (k.has(/^cond_stage_model\.model\./)) return ['sd2', 'a Stable Diffusion 2.x model (OpenCLIP ViT-H text encoder, 1024 wide)'];
  const ctx = new Set(k.shapes(/attn2\.to_k\.weight$/).map((s) => s[1]));
  if (ctx.has(1024)) return ['sd2', 'a Stable Diffusion 2.x model (1024-wide cross-attention context)'];
  if (ctx.has(2048)) return ['sdxl', 'an SDXL model (2048-wide cross-attention context)'];
  const te = k.shape(/(^|\.)text_model\.embeddings\.token_embedding\.weight$/)?.[1];
  if (te === 1024) return ['sd2', 'a Stable Diffusion 2.x text encoder (1024 wide)'];
  if (te === 1280 || k.has(/^text_projection\./)) return ['sdxl', "SDXL's second text encoder (OpenCLIP ViT-bigG)"];
  return null;
}

function inputChannels(k: Keys): [FoundKind, string] | null {
  const cin = k.shape(/^(model\.diffusion_model\.input_blocks\.0\.0|conv_in)\.weight$/)?.[1];
  if (cin === undefined || cin === 4) return null;
  if (cin === 9) return ['inpainting', 'an inpainting model (a U-Net with 9 input channels: latent, mask, masked image)'];
  return ['other-input-channels', `a U-Net with ${cin} input channels (SD 1.x has 4; 8 is InstructPix2Pix, 5 a depth model)`];
}

/** Which SD 1.x parts a file holds, in which layout. */
function parts(k: Keys) {
  return {
    ldmUnet: k.hasPrefix(LDM_UNET_PREFIX),
    ldmVae: k.hasPrefix(LDM_VAE_PREFIX),
    ldmClip: k.hasPrefix(LDM_CLIP_PREFIX),
    bareLdmVae: k.has(/^encoder\.down\.\d+\./) && k.has(/^decoder\.up\.\d+\./),
    unet: k.has(/^conv_in\.weight$/) && k.has(/^down_blocks\.\d+\./) && k.has(/^up_blocks\.\d+\./),
    textEncoder: k.has(/^text_model\.encoder\.layers\.\d+\./),
    vae: k.has(/^encoder\.down_blocks\.\d+\./) && k.has(/^decoder\.up_blocks\.\d+\./),
  };
}

const AS_COMPONENT: Record<Exclude<Expected, 'checkpoint'>, string> = { unet: 'a diffusers U-Net (unet/)', 'text-encoder': 'a CLIP text encoder (text_encoder/)', vae: 'a diffusers VAE (vae/)' };

/**
 * Classify a checkpoint from its tensor names and shapes. `expect` says what is being loaded: a
 * whole model from one file (the default), or one component of a diffusers repository. Throws
 * CheckpointKindError for anything else, naming what the file is.
 */
export function detectCheckpoint(tensors: Shapes, o: { file?: string; expect?: Expected } = {}): Sd1Checkpoint {
  const file = o.file ?? 'the file';
  const want = o.expect ?? 'checkpoint';
  const no = (found: FoundKind, what: string): never => {
    throw new CheckpointKindError(found, file, what);
  };
  if (tensors.size === 0) no('empty', 'an empty safetensors file (no tensors)');
  const k = new Keys(tensors);
  const refused = otherFamily(k) ?? wrongWidth(k) ?? inputChannels(k);
  if (refused) no(...refused);
  const p = parts(k);

  if (p.ldmUnet && p.ldmVae && p.ldmClip) {
    if (want === 'checkpoint') return { kind: 'sd1', layout: 'single-file', component: 'checkpoint', clipForm: clipLdmForm(tensors.keys()) };
    no('wrong-component', `a whole single-file SD 1.x checkpoint, where ${AS_COMPONENT[want]} was expected`);
  }
  if (p.ldmUnet) no('incomplete', `an SD 1.x single-file checkpoint without its ${[!p.ldmVae && 'VAE (first_stage_model.*)', !p.ldmClip && 'text encoder (cond_stage_model.transformer.*)'].filter(Boolean).join(' and ')}`);
  const component = p.unet ? 'unet' : p.textEncoder ? 'text-encoder' : p.vae ? 'vae' : null;
  if (component && component === want) return { kind: 'sd1', layout: 'diffusers', component };
  const alone: [FoundKind, string] | null =
    component === 'unet' ? ['unet-only', 'a diffusers U-Net on its own (load the whole repository, a folder or a Hugging Face id, instead)']
    : component === 'vae' || p.ldmVae || p.bareLdmVae ? ['vae-only', 'a VAE on its own (no U-Net or text encoder)']
    : component === 'text-encoder' || p.ldmClip ? ['text-encoder-only', 'a CLIP text encoder on its own (no U-Net or VAE)']
    : null;
  if (alone && want === 'checkpoint') no(...alone);
  if (alone) no('wrong-component', `${alone[1]}, where ${AS_COMPONENT[want as Exclude<Expected, 'checkpoint'>]} was expected`);
  return no('unknown', `an unrecognised set of ${tensors.size} tensors (neither the SD 1.x single-file layout nor a diffusers component; the first is "${clip(String(tensors.keys().next().value))}")`);
}
