// A kohya-format LoRA file applied for inference at a strength: any rank per module, LoCon conv modules, absent alphas; the models' Adapter hook.
import { add, conv2d, reshape, scale, type Conv2dOptions, type LowRank } from '../engine/index.js';
import type { Backend } from '../engine/backend.js';
import { tensor, type Tensor } from '../engine/tensor.js';
import { clipWeightShapes, type ClipConfig } from './clip.js';
import { kohyaLoraName } from './keymap.js';
import type { Adapter } from './layers.js';
import { detectNetworkType } from './lycoris-file.js';
import { loadLycorisInference, type AdaptableLayers } from './lycoris-apply.js';
import { bytesSource, openSafetensors, type SafetensorsFile } from './safetensors.js';
import { unetWeightShapes, type UNetConfig } from './unet.js';

/** A module of the file on the GPU: factors as the engine takes them, and its scale alpha / rank. */
interface FileModule {
  /** [rank, in] for linear and 1x1 layers, [rank, in, k, k] for k x k convs. */
  down: Tensor;
  /** [out, rank] for linear and 1x1 layers, [out, rank, 1, 1] for k x k convs. */
  up: Tensor;
  scale: number;
  kernel: number;
}

/** A LoRA file's modules on the GPU for one model, as adapters for its U-Net and text encoder. */
export interface InferenceLora {
  /** The U-Net's adapter at strength 1 (scale each use with `atStrength`). */
  unet: Adapter;
  /** The text encoder's, or null when the file has no text-encoder modules. */
  te: Adapter | null;
  /** Modules applied, per part. */
  modules: { unet: number; te: number };
  /** What the person should know (modules skipped, alphas assumed), in words. */
  notes: string[];
  /** The file's metadata (kohya's ss_* keys, modelspec.*), as stored. */
  metadata: Record<string, string>;
  dispose(): void;
}

/** The layers a LoRA can adapt in this model, by kohya module name: part, diffusers path, base weight shape. */
function adaptableLayers(unet: UNetConfig, clip: ClipConfig): AdaptableLayers {
  const out: AdaptableLayers = new Map();
  const add = (part: 'unet' | 'te', shapes: Map<string, number[]>) => {
    for (const [name, shape] of shapes) {
      if (!name.endsWith('.weight') || (shape.length !== 2 && shape.length !== 4) || name.includes('embedding')) continue;
      const path = name.slice(0, -'.weight'.length);
      out.set(kohyaLoraName(path, part), { part, path, shape });
    }
  };
  add('unet', unetWeightShapes(unet));
  add('te', clipWeightShapes(clip));
  return out;
}

/** Refuse files of other layouts by name, with what to do instead. */
function checkLayout(keys: string[], name: string): void {
  const has = (re: RegExp) => keys.find((k) => re.test(k));
  const xl = has(/^lora_te[12]_/);
  if (xl) throw new Error(`${name} is an SDXL LoRA (${xl}); the loaded model is SD 1.x: load an SD 1.x LoRA`);
  const lyco = has(/\.(lora_mid\.weight|diff)$/);
  if (lyco) throw new Error(`${name} holds LyCORIS modules (${lyco}) that this loader does not apply: LoRA, LoCon, LoHa, LoKr and DoRA modules are supported here (no Tucker or full-diff forms)`);
  const peft = has(/(lora_A|lora_B|\.lora\.(down|up)\.weight)/);
  if (peft && !has(/\.lora_down\.weight$/)) throw new Error(`${name} is in the diffusers/PEFT layout (${peft}); convert it to kohya's layout (lora_unet_… / lora_te_… with lora_down / lora_up)`);
  if (!has(/\.lora_down\.weight$/)) throw new Error(`${name} has no LoRA modules (no "….lora_down.weight" tensors among its ${keys.length} tensors): is it a LoRA file?`);
}

/** Check a factor pair against the base layer it adapts and return the rank and kernel. */
function factorShapes(k: string, d: number[], u: number[], base: number[], name: string): { rank: number; kernel: number } {
  const [out, inp] = [base[0]!, base[1]!];
  const kernel = base.length === 4 ? base[2]! : 1;
  const rank = d[0]!;
  const downOk = kernel === 1 ? (d.length === 2 && d[1] === inp) || (d.length === 4 && d[1] === inp && d[2] === 1 && d[3] === 1) : d.length === 4 && d[1] === inp && d[2] === kernel && d[3] === kernel;
  const upOk = u[0] === out && u[1] === rank && (u.length === 2 || (u.length === 4 && u[2] === 1 && u[3] === 1));
  if (!downOk || !upOk || !(rank > 0))
    throw new Error(`${name}: ${k} has shapes [${d}] / [${u}], which do not adapt this model's layer [${base}] (a LoRA for another base model?)`);
  return { rank, kernel };
}

/** The module's alpha (absent: alpha = rank, a scale of 1, as ComfyUI and A1111 read it). */
async function alphaOf(f: SafetensorsFile, k: string, rank: number, name: string): Promise<number> {
  if (!f.tensors.has(`${k}.alpha`)) return rank;
  const a = (await f.readTensor(`${k}.alpha`))[0]!;
  if (!(a > 0) || !Number.isFinite(a)) throw new Error(`${name}: ${k}.alpha is ${a}; a LoRA needs an alpha above 0 (its scale is alpha / rank)`);
  return a;
}

/**
 * Open a kohya LoRA file for inference on this model: every `<module>.lora_down.weight` /
 * `lora_up.weight` pair whose module the model has is uploaded (its own rank; LoCon's k x k convs
 * too); modules the model lacks are skipped and counted in `notes`; other layouts are refused by name.
 * A LoHa, LoKr or DoRA file (LyCORIS' keys) is opened by `loadLycorisInference` instead.
 */
export async function loadInferenceLora(backend: Backend, model: { unet: { config: UNetConfig }; clip: { config: ClipConfig } }, bytes: Uint8Array, name = 'LoRA file'): Promise<InferenceLora> {
  const f = await openSafetensors(bytesSource(bytes, name));
  const keys = [...f.tensors.keys()];
  const layers = adaptableLayers(model.unet.config, model.clip.config);
  const type = detectNetworkType(keys);
  if (type && type !== 'lora' && !keys.some((k) => /^lora_te[12]_/.test(k))) return loadLycorisInference(backend, f, type, layers, name);
  checkLayout(keys, name);
  const parts = { unet: new Map<string, FileModule>(), te: new Map<string, FileModule>() };
  const skipped: string[] = [];
  const uploaded: Tensor[] = [];
  let noAlpha = 0;
  try {
    for (const key of keys.filter((x) => x.endsWith('.lora_down.weight'))) {
      const k = key.slice(0, -'.lora_down.weight'.length);
      const layer = layers.get(k);
      const u = f.tensors.get(`${k}.lora_up.weight`);
      if (!u) throw new Error(`${name}: ${k} has lora_down but no lora_up weight (a damaged file?)`);
      if (!layer) {
        skipped.push(k);
        continue;
      }
      const { rank, kernel } = factorShapes(k, f.tensors.get(key)!.shape, u.shape, layer.shape, name);
      if (!f.tensors.has(`${k}.alpha`)) noAlpha++;
      const alpha = await alphaOf(f, k, rank, name);
      const [out, inp] = [layer.shape[0]!, layer.shape[1]!];
      const down = tensor(backend, await f.readTensor(key), kernel === 1 ? [rank, inp] : [rank, inp, kernel, kernel]);
      uploaded.push(down);
      const up = tensor(backend, await f.readTensor(`${k}.lora_up.weight`), kernel === 1 ? [out, rank] : [out, rank, 1, 1]);
      uploaded.push(up);
      parts[layer.part].set(layer.path, { down, up, scale: alpha / rank, kernel });
    }
  } catch (e) {
    for (const t of uploaded) t.dispose();
    throw e;
  }
  const count = parts.unet.size + parts.te.size;
  if (!count) throw new Error(`${name}: none of its ${skipped.length} LoRA modules is a layer of this model (first: ${skipped[0]}); was it trained for another base model?`);
  const notes: string[] = [];
  if (skipped.length) notes.push(`${name}: ${skipped.length} of its ${skipped.length + count} modules are not layers of this model and are left out (first: ${skipped[0]})`);
  if (noAlpha) notes.push(`${name}: ${noAlpha} modules have no alpha; they are applied with alpha = rank (scale 1), as A1111 and ComfyUI do`);
  return {
    unet: fileAdapter(parts.unet),
    te: parts.te.size ? fileAdapter(parts.te) : null,
    modules: { unet: parts.unet.size, te: parts.te.size },
    notes,
    metadata: f.metadata,
    dispose: () => uploaded.forEach((t) => t.dispose()),
  };
}

/** The Adapter over one part's modules: linear and 1x1 layers fused with the base GEMM, k x k convs as a delta. */
function fileAdapter(modules: Map<string, FileModule>): Adapter {
  return {
    lowRank: (layer) => {
      const m = modules.get(layer);
      return m && m.kernel === 1 ? { down: m.down, up: m.up, scale: m.scale } : null;
    },
    convDelta: (layer, x, opts) => {
      const m = modules.get(layer);
      if (!m) return null;
      const [rank, inp, out] = [m.down.shape[0]!, m.down.shape[1]!, m.up.shape[0]!];
      const down = m.kernel === 1 ? reshape(m.down, [rank, inp, 1, 1]) : m.down;
      const up = m.kernel === 1 ? reshape(m.up, [out, rank, 1, 1]) : m.up;
      return scale(conv2d(conv2d(x, down, undefined, opts), up), m.scale);
    },
  };
}

/**
 * An adapter at a strength (the multiplier on its delta): null at 0, so strength 0 runs the base
 * model's own code path; the adapter itself at 1; otherwise every low-rank scale and conv delta times
 * `strength`, and a weight-space adapter's (LoHa, LoKr, DoRA) merged weight M as W + s·(M − W), as ComfyUI and A1111 read it.
 */
export function atStrength(a: Adapter | null | undefined, strength: number): Adapter | null {
  if (!a || strength === 0) return null;
  if (strength === 1) return a;
  return {
    lowRank: (layer): LowRank | null => {
      const r = a.lowRank(layer);
      return r ? { ...r, scale: r.scale * strength } : null;
    },
    convDelta: (layer: string, x: Tensor, opts: Conv2dOptions) => {
      const d = a.convDelta(layer, x, opts);
      return d ? scale(d, strength) : null;
    },
    ...(a.weight
      ? {
          weight: (layer: string, w: Tensor) => {
            const m = a.weight!(layer, w);
            return m ? add(scale(m, strength), w, 1 - strength) : null;
          },
        }
      : {}),
    ...(a.frozen ? { frozen: (layer: string) => a.frozen!(layer) } : {}),
  };
}
