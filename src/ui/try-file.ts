// A first look at a LoRA file dropped on the Try-it panel: refuse at once, by name, what is plainly not an SD 1.x kohya LoRA (the worker checks the rest).

/** The safetensors header's tensor names, or why the bytes are not a safetensors file. */
function headerNames(bytes: Uint8Array): string[] | string {
  if (bytes.length < 8) return 'it is too short for a .safetensors file';
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (!(n > 1 && 8 + n <= bytes.length)) return 'its header length does not fit the file (damaged, or not .safetensors)';
  try {
    return Object.keys(JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as object).filter((k) => k !== '__metadata__');
  } catch {
    return 'its header is not JSON (damaged, or not .safetensors)';
  }
}

/** Why this file cannot be tried as an SD 1.x LoRA, naming the fix; null when it looks like one. */
export function loraFileProblem(name: string, bytes: Uint8Array): string | null {
  if (!/\.safetensors$/i.test(name)) return `${name}: only .safetensors LoRA files can be tried (.ckpt/.pt files are pickles: convert them to .safetensors first).`;
  const keys = headerNames(bytes);
  if (typeof keys === 'string') return `${name}: ${keys}.`;
  if (keys.some((k) => k.startsWith('lora_te1_') || k.startsWith('lora_te2_'))) return `${name} is an SDXL LoRA (lora_te1_/lora_te2_ keys): only SD 1.x LoRAs fit the models here.`;
  if (!keys.some((k) => k.startsWith('lora_unet_') || k.startsWith('lora_te_')))
    return `${name} has no kohya LoRA keys (lora_unet_…, lora_te_…)${keys.some((k) => /lora[._](A|B|down|up)\b/.test(k)) ? ': it looks like a diffusers/PEFT LoRA; save it in kohya format (e.g. with kohya sd-scripts or ComfyUI)' : ': it is not a LoRA, maybe a full model (load that in step 1)'}.`;
  return null;
}
