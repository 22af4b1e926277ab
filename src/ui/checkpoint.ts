// What a picked or dropped model file is, from its name and first bytes: safetensors to load, or a PyTorch pickle to convert first.

/** Extensions of PyTorch pickle checkpoints (also diffusers' pytorch_model.bin). */
export const PICKLE_EXTENSIONS = ['.ckpt', '.pt', '.pth', '.bin'] as const;
/** The checkpoint picker's accept list: safetensors to load, pickles only to be told how to convert them. */
export const CHECKPOINT_ACCEPT = ['.safetensors', ...PICKLE_EXTENSIONS].join(',');
/** How many leading bytes {@link pickleCheckpoint} needs. */
export const HEAD_BYTES = 8;

/** PyTorch's zip container (torch.save since 1.6) or a bare pickle (protocol 2 to 5). */
function pickleMagic(h: Uint8Array): boolean {
  const zip = h[0] === 0x50 && h[1] === 0x4b && h[2] === 0x03 && h[3] === 0x04;
  const pickle = h[0] === 0x80 && h[1]! >= 2 && h[1]! <= 5;
  return zip || pickle;
}

const stem = (name: string) => name.replace(/^.*[\\/]/, '').replace(/\.[^.]+$/, '') || 'model';

/**
 * A refusal with the way out when the file is a pickle checkpoint (by extension or by its first
 * bytes, whatever it is named), or null for anything else (the model layer judges the rest). Pickle
 * files can run arbitrary code when unpickled, so the page never opens one.
 */
export function pickleCheckpoint(name: string, head: Uint8Array): { message: string; help: string } | null {
  const ext = /\.[^.]+$/.exec(name.toLowerCase())?.[0] ?? '';
  if (!(PICKLE_EXTENSIONS as readonly string[]).includes(ext) && !pickleMagic(head)) return null;
  const s = stem(name).replace(/'/g, '');
  return {
    message:
      `${name} is a PyTorch pickle checkpoint (${ext || 'pickle data'}), not a .safetensors file. Pickle files can run any code when they are opened, so LoRASmith does not read them. ` +
      'Most model pages offer the same model as .safetensors: download that one. Or convert this file on your computer with Python (pip install torch safetensors), then load the .safetensors it writes:',
    help:
      `python -c "import torch; from safetensors.torch import save_file; ` +
      `sd = torch.load('${s}${ext}', map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); ` +
      `save_file({k: v.contiguous().half() if v.is_floating_point() else v.contiguous() for k, v in sd.items() if torch.is_tensor(v)}, '${s}.safetensors')"`,
  };
}
