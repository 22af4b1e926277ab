// What a checkpoint file is, from its tensor names and shapes; anything but SD 1.x is refused by name.
export type CheckpointKind = 'sd1-single' | 'sd1-unet' | 'sd1-text-encoder' | 'sd1-vae';

/** A file that is not a loadable SD 1.x model: the message says what it is and what is supported. */
export class CheckpointKindError extends Error {
  constructor(readonly found: string, file: string) {
    super(`${file} looks like ${found}. LoRASmith trains on Stable Diffusion 1.x models (SD 1.4, 1.5 and their fine-tunes): a single-file .safetensors checkpoint or a diffusers repository.`);
    this.name = 'CheckpointKindError';
  }
}

type Shapes = ReadonlyMap<string, { shape: number[] }>;

function any(t: Shapes, re: RegExp): boolean {
  for (const k of t.keys()) if (re.test(k)) return true;
  return false;
}

function shapeOf(t: Shapes, re: RegExp): number[] | undefined {
  for (const [k, v] of t) if (re.test(k)) return v.shape;
  return undefined;
}

/** Classify a checkpoint; throws CheckpointKindError for anything that is not SD 1.x. */
export function detectCheckpoint(t: Shapes, file = 'the file'): CheckpointKind {
  const no = (what: string): never => {
    throw new CheckpointKindError(what, file);
  };
  if (t.size === 0) no('an empty safetensors file');
  if (any(t, /^lora_(unet|te\d?)_/) || any(t, /\.lora_(down|up|A|B)\.weight$/)) no('a LoRA (it adapts a model; it is not one): load it as a LoRA to resume, and pick an SD 1.x base model');
  if (any(t, /^conditioner\.embedders\./) || any(t, /add_embedding\.linear_1/)) no('an SDXL model (2048-wide text context)');
  if (any(t, /joint_blocks\./) || any(t, /context_embedder/)) no('a Stable Diffusion 3 model');
  if (any(t, /double_blocks\./) || any(t, /single_blocks\./)) no('a Flux model');
  if (any(t, /^cond_stage_model\.model\./)) no('a Stable Diffusion 2.x model (OpenCLIP text encoder, 1024 wide)');
  const ctx = shapeOf(t, /attn2\.to_k\.weight$/);
  if (ctx && ctx[1] === 1024) no('a Stable Diffusion 2.x model (1024-wide cross-attention)');
  if (ctx && ctx[1] === 2048) no('an SDXL model (2048-wide cross-attention)');
  const convIn = shapeOf(t, /^(model\.diffusion_model\.input_blocks\.0\.0|conv_in)\.weight$/);
  if (convIn && convIn[1] === 9) no('an inpainting model (9 input channels)');
  if (convIn && convIn[1] !== 4 && !any(t, /^encoder\./)) no(`a model with ${convIn[1]} latent input channels`);
  const single = any(t, /^model\.diffusion_model\./);
  if (single) {
    if (!any(t, /^first_stage_model\./)) no('a U-Net-only single file without its VAE');
    if (!any(t, /^cond_stage_model\.transformer\./)) no('a checkpoint without its CLIP text encoder');
    return 'sd1-single';
  }
  if (any(t, /^down_blocks\.\d+\.attentions\./) && any(t, /^conv_in\./)) return 'sd1-unet';
  if (any(t, /^text_model\.encoder\.layers\./)) return 'sd1-text-encoder';
  if (any(t, /^(first_stage_model\.)?encoder\.down/) && any(t, /^(first_stage_model\.)?decoder\.up/)) {
    if (any(t, /^first_stage_model\./) || !any(t, /^conv_in\./)) no('a VAE on its own (no U-Net or text encoder)');
  }
  return no('an unrecognised set of tensors (neither the SD 1.x single-file layout nor a diffusers component)');
}
