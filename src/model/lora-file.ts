// The LoRA file in kohya format: tensors, alpha scalars, ss_* and modelspec metadata, and sshs hashes.
import { f32ToF16Bits } from '../engine/dtype.js';
import { bytesSource, openSafetensors, writeSafetensors } from './safetensors.js';
import { kohyaName, kohyaShapes, type LoraInit, type LoraModuleSpec } from './lora.js';

/** Host copies of a module's weights, in the engine's layout ([rank, in] etc.). */
export interface LoraWeights {
  spec: LoraModuleSpec;
  down: Float32Array;
  up: Float32Array;
}

export type SavePrecision = 'fp16' | 'fp32';

export function toF16(src: Float32Array): Uint16Array {
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
  return writeHashedSafetensors(tensors.map((t) => ({ ...t, shape: [...t.shape] })), metadata);
}

/** A network file with kohya's `sshs_*` hashes, computed on the file written with only the `ss_*` metadata (LoRA and LyCORIS files alike). */
export async function writeHashedSafetensors(tensors: Parameters<typeof writeSafetensors>[0], metadata: Record<string, string>): Promise<Uint8Array> {
  const ssOnly = Object.fromEntries(Object.entries(metadata).filter(([k]) => k.startsWith('ss_')));
  const draft = writeSafetensors(tensors, ssOnly);
  const modelHash = await sha256Hex(draft.subarray(headerEnd(draft)));
  const legacy = (await sha256Hex(draft.subarray(0x100000, 0x110000))).slice(0, 8);
  return writeSafetensors(tensors, { ...metadata, sshs_model_hash: modelHash, sshs_legacy_hash: legacy });
}

/** A LoRA file read back to continue training: per kohya module name, weights with the file's rank and alpha. */
export interface LoraFileContents {
  weights: Map<string, LoraInit>;
  /** Where the file's rank or alpha differ from the settings' (the run continues with the file's), in words. */
  notes: string[];
}

const scaleText = (rank: number, alpha: number) => `rank ${rank}, alpha ${+alpha.toPrecision(4)} (scale ${+(alpha / rank).toPrecision(3)})`;

/** One note per kind of module (network, LoCon) whose file rank/alpha differ from the settings'. */
function differences(found: { spec: LoraModuleSpec; rank: number; alpha: number }[], name: string): string[] {
  const groups = new Map<string, { want: LoraModuleSpec; got: Set<string>; n: number }>();
  for (const f of found) {
    if (f.rank === f.spec.rank && f.alpha === f.spec.alpha) continue;
    const key = `${f.spec.kind === 'conv' ? 'conv' : 'net'}:${f.spec.rank}:${f.spec.alpha}`;
    const g = groups.get(key) ?? { want: f.spec, got: new Set<string>(), n: 0 };
    g.got.add(scaleText(f.rank, f.alpha));
    g.n++;
    groups.set(key, g);
  }
  return [...groups.values()].map(({ want, got, n }) => {
    const what = want.kind === 'conv' ? 'LoCon (3x3 conv) modules' : 'modules';
    const has = [...got].slice(0, 3).join('; ') + (got.size > 3 ? `; and ${got.size - 3} more` : '');
    const settings = want.kind === 'conv' ? 'conv dim and conv alpha' : 'network dim and alpha';
    return `${name}: ${n} ${what} have ${has}; the settings' ${settings} give ${scaleText(want.rank, want.alpha)}. Training continues with the file's rank and alpha.`;
  });
}

/**
 * Read a kohya LoRA back (to continue training it): per module name, the weights in the engine's
 * layout with the file's rank (from the shapes) and alpha (its `.alpha` tensor; absent means
 * alpha = rank, a scale of 1, as ComfyUI and A1111 read it). Each module is checked against the
 * network that will receive it, except for the rank; ranks and alphas that differ from the
 * settings are kept and described in `notes`.
 */
export async function readLoraFile(bytes: Uint8Array, specs: readonly LoraModuleSpec[], name = 'LoRA file'): Promise<LoraFileContents> {
  const f = await openSafetensors(bytesSource(bytes, name));
  const weights = new Map<string, LoraInit>();
  const found: { spec: LoraModuleSpec; rank: number; alpha: number }[] = [];
  const missing: string[] = [];
  for (const spec of specs) {
    const k = kohyaName(spec);
    const d = f.tensors.get(`${k}.lora_down.weight`);
    const u = f.tensors.get(`${k}.lora_up.weight`);
    if (!d || !u) {
      missing.push(k);
      continue;
    }
    const rank = d.shape[0]!;
    const want = kohyaShapes({ ...spec, rank });
    const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
    if (!same(d.shape, want.down) || !same(u.shape, want.up))
      throw new Error(`${name}: ${k} has shapes [${d.shape}] / [${u.shape}] but this model's layer needs [${want.down}] / [${want.up}] at rank ${rank} (another base model, or LoCon settings that differ from the file's?)`);
    const a = f.tensors.get(`${k}.alpha`);
    const stored = a ? (await f.readTensor(`${k}.alpha`))[0]! : rank;
    if (!(stored > 0) || !Number.isFinite(stored)) throw new Error(`${name}: ${k}.alpha is ${stored}; a LoRA needs an alpha above 0 (its scale is alpha / rank)`);
    // An fp16 file holds the settings' alpha rounded (0.1 as 0.09998): that is the same alpha.
    const alpha = Math.abs(stored - spec.alpha) <= 1e-3 * spec.alpha ? spec.alpha : stored;
    weights.set(k, { down: await f.readTensor(`${k}.lora_down.weight`), up: await f.readTensor(`${k}.lora_up.weight`), rank, alpha });
    found.push({ spec, rank, alpha });
  }
  if (missing.length) throw new Error(`${name} lacks ${missing.length} of the ${specs.length} modules this run trains (first: ${missing[0]}); was it trained with the same targets, text-encoder and conv dim (LoCon) settings?`);
  return { weights, notes: differences(found, name) };
}
