// The LoRA file in kohya format: tensors, alpha scalars, ss_* and modelspec metadata, and sshs hashes.
import { f32ToF16Bits } from '../engine/dtype.js';
import { bytesSource, openSafetensors, writeSafetensors } from './safetensors.js';
import { kohyaName, kohyaShapes, type LoraModuleSpec } from './lora.js';

/** Host copies of a module's weights, in the engine's layout ([rank, in] etc.). */
export interface LoraWeights {
  spec: LoraModuleSpec;
  down: Float32Array;
  up: Float32Array;
}

export type SavePrecision = 'fp16' | 'fp32';

function toF16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]!);
  return out;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = await globalThis.crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function headerEnd(file: Uint8Array): number {
  const n = new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true);
  return 8 + Number(n);
}

/**
 * Serialize a LoRA as kohya does: per module `lora_down.weight`, `lora_up.weight` and a scalar
 * `alpha` in the save precision; `sshs_model_hash` (sha256 of the bytes after the header) and
 * `sshs_legacy_hash` (first 8 hex of sha256 over 0x10000 bytes at 0x100000) are computed on the
 * file written with only the `ss_*` metadata, then everything else is added.
 */
export async function writeLoraFile(modules: LoraWeights[], metadata: Record<string, string>, precision: SavePrecision = 'fp16'): Promise<Uint8Array> {
  const dtype = precision === 'fp16' ? 'F16' : 'F32';
  const conv = (a: Float32Array) => (precision === 'fp16' ? toF16(a) : a);
  const tensors = modules.flatMap(({ spec, down, up }) => {
    const name = kohyaName(spec);
    const shapes = kohyaShapes(spec);
    return [
      { name: `${name}.lora_down.weight`, dtype, shape: shapes.down, data: conv(down) },
      { name: `${name}.lora_up.weight`, dtype, shape: shapes.up, data: conv(up) },
      { name: `${name}.alpha`, dtype, shape: [] as number[], data: conv(Float32Array.of(spec.alpha)) },
    ] as const;
  });
  const ssOnly = Object.fromEntries(Object.entries(metadata).filter(([k]) => k.startsWith('ss_')));
  const draft = writeSafetensors(tensors.map((t) => ({ ...t, shape: [...t.shape] })), ssOnly);
  const modelHash = await sha256Hex(draft.subarray(headerEnd(draft)));
  const legacy = (await sha256Hex(draft.subarray(0x100000, 0x110000))).slice(0, 8);
  return writeSafetensors(tensors.map((t) => ({ ...t, shape: [...t.shape] })), { ...metadata, sshs_model_hash: modelHash, sshs_legacy_hash: legacy });
}

/**
 * Read a kohya LoRA back (to resume training): per module name, the weights in the engine's layout.
 * Checks each module against the network that will receive it.
 */
export async function readLoraFile(bytes: Uint8Array, specs: readonly LoraModuleSpec[], name = 'LoRA file'): Promise<Map<string, { down: Float32Array; up: Float32Array }>> {
  const f = await openSafetensors(bytesSource(bytes, name));
  const out = new Map<string, { down: Float32Array; up: Float32Array }>();
  const missing: string[] = [];
  for (const spec of specs) {
    const k = kohyaName(spec);
    const d = f.tensors.get(`${k}.lora_down.weight`);
    const u = f.tensors.get(`${k}.lora_up.weight`);
    if (!d || !u) {
      missing.push(k);
      continue;
    }
    const want = kohyaShapes(spec);
    const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
    if (!same(d.shape, want.down) || !same(u.shape, want.up))
      throw new Error(`${name}: ${k} has shapes [${d.shape}] / [${u.shape}] but this run needs [${want.down}] / [${want.up}] (different rank or base model?)`);
    out.set(k, { down: await f.readTensor(`${k}.lora_down.weight`), up: await f.readTensor(`${k}.lora_up.weight`) });
  }
  if (missing.length) throw new Error(`${name} lacks ${missing.length} of the ${specs.length} modules this run trains (first: ${missing[0]}); was it trained with the same targets and text-encoder setting?`);
  return out;
}
