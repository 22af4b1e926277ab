// A LoHa, LoKr or DoRA file (LyCORIS' layout) applied for inference at a strength: each module's tensors checked against its layer, merged into the weight as training does.
import { add, mul, powScalar, reshape, sum } from '../engine/index.js';
import type { Backend } from '../engine/backend.js';
import { tensor, type Tensor } from '../engine/tensor.js';
import type { Adapter } from './layers.js';
import type { InferenceLora } from './lora-apply.js';
import type { LoraModuleSpec } from './lora.js';
import { DORA_EPS, mergedWeight, moduleDelta, moduleLayout, type ModuleLayout, type NetworkType } from './lycoris.js';
import type { SafetensorsFile } from './safetensors.js';

/** A layer the file may adapt: its part, diffusers path and base weight shape, by kohya module name. */
export type AdaptableLayers = Map<string, { part: 'unet' | 'te'; path: string; shape: number[] }>;

type LycorisType = Exclude<NetworkType, 'lora'>;

const TYPE_NAME: Record<LycorisType, string> = { loha: 'LoHa', lokr: 'LoKr', dora: 'DoRA' };

/** Keys only this type's modules hold: a module of the file is the name before one. */
const MARKER: Record<LycorisType, RegExp> = { loha: /\.hada_\w+$/, lokr: /\.lokr_\w+$/, dora: /\.dora_scale$/ };

/** LyCORIS forms that exist but that this loader does not build, by a key they alone hold. */
const UNBUILT: [RegExp, string][] = [
  [/^(hada_t[12]|lokr_t2|lora_mid\.weight)$/, 'the Tucker form (use_tucker)'],
  [/^lokr_w1_[ab]$/, "LoKr with a factored w1 (lokr_w1_a / lokr_w1_b, from LyCORIS' decompose_both)"],
  [/^dora_scale$/, 'DoRA on LoHa or LoKr'],
  [/^(diff|diff_b|bias_indices|bias_values|bias_size|on_input)$/, 'a full or bias-only diff module'],
];

/** A module as the loader holds it: its spec (rank, alpha from the file), layout and tensors on the GPU. */
interface LoadedModule {
  spec: LoraModuleSpec;
  layout: ModuleLayout;
  tensors: Map<string, Tensor>;
  /** DoRA with its magnitude per output row (LyCORIS' wd_on_out: dora_scale [out, 1(, 1, 1)]) instead of per input channel. */
  outputAxis: boolean;
}

/**
 * The layout with DoRA's magnitude per output row where the file has it so: dora_scale [out, 1] for
 * linears, [out, 1, 1, 1] for convs (ComfyUI tells the axis by the first dimension, as here).
 */
function doraAxis(layout: ModuleLayout, got: number[] | undefined, base: number[]): { layout: ModuleLayout; outputAxis: boolean } {
  const rows = base.length === 4 ? [base[0]!, 1, 1, 1] : [base[0]!, 1];
  const outputAxis = !!got && base[0] !== 1 && got.length === rows.length && got.every((d, i) => d === rows[i]);
  if (!outputAxis) return { layout, outputAxis };
  return { layout: { ...layout, params: layout.params.map((p) => (p.key === 'dora_scale' ? { ...p, shape: rows, fileShape: rows } : p)) }, outputAxis };
}

/** DoRA over the output axis: W_d = W'·m / (‖W'‖ + eps), the norm per output row (over inputs and taps), W' = W + dW. */
function outputAxisDora(m: LoadedModule, w: Tensor): Tensor {
  const merged = add(reshape(moduleDelta('dora', m.spec, (key) => m.tensors.get(key)!, m.layout.scale), w.shape), w);
  const norm = powScalar(sum(mul(merged, merged), w.shape.map((_, i) => i).slice(1), true), 0.5);
  return mul(merged, mul(reshape(m.tensors.get('dora_scale')!, norm.shape), powScalar(norm, -1, DORA_EPS)));
}

/** The spec our own network would have for this layer, with the file's rank and alpha. */
function layerSpec(layer: { part: 'unet' | 'te'; path: string; shape: number[] }, rank: number, alpha: number): LoraModuleSpec {
  const w = layer.shape;
  const pointwise = w.length === 4 && w[2] === 1;
  return { path: layer.path, part: layer.part, kind: w.length === 4 && !pointwise ? 'conv' : 'linear', inFeatures: w[1]!, outFeatures: w[0]!, kernel: w.length === 4 ? w[2]! : 1, rank, alpha, pointwise };
}

/** The rank the module's shapes say (LoKr with a full w2 has none: a rank at or above half its larger factor lays it out so). */
function moduleRank(type: LycorisType, shape: (suffix: string) => number[] | undefined, layer: { shape: number[] }): number {
  const [b, a] = type === 'loha' ? ['hada_w1_b', 'hada_w1_a'] : type === 'lokr' ? ['lokr_w2_b', 'lokr_w2_a'] : ['lora_down.weight', 'lora_up.weight'];
  return shape(b)?.[0] ?? shape(a)?.[1] ?? Math.max(layer.shape[0]!, layer.shape[1]!);
}

/** Refuse a module whose keys or shapes are not the layout this loader applies, naming what differs. */
function checkModule(type: LycorisType, k: string, suffixes: string[], shape: (suffix: string) => number[] | undefined, layout: ModuleLayout, rank: number, name: string): void {
  const want = new Set([...layout.params.map((p) => p.key), 'alpha']);
  const extra = suffixes.filter((x) => !want.has(x));
  // A form LyCORIS has but this loader does not build is named first; any other stray tensor after.
  const x = extra.find((e) => UNBUILT.some(([re]) => re.test(e))) ?? extra[0];
  if (x !== undefined) {
    const form = UNBUILT.find(([re]) => re.test(x))?.[1];
    throw new Error(`${name}: ${k}.${x} is ${form ?? 'a tensor'} that this loader does not apply to ${TYPE_NAME[type]} modules (it applies ${[...want].join(', ')}); save the network without it`);
  }
  for (const p of layout.params) {
    const got = shape(p.key);
    if (!got) throw new Error(`${name}: ${k} has no ${p.key} (a ${TYPE_NAME[type]} module of this layer holds ${layout.params.map((q) => q.key).join(', ')}): a damaged file, or another split of LoKr's factors than LyCORIS' default (factor -1)?`);
    if (got.join() !== p.fileShape.join() && got.join() !== p.shape.join())
      throw new Error(`${name}: ${k}.${p.key} has shape [${got}] where this model's layer needs [${p.fileShape}] for ${TYPE_NAME[type]} at rank ${rank} (a file for another base model?)`);
  }
}

/** Read one module's tensors onto the GPU after checking them; its alpha absent means alpha = rank. */
async function loadModule(backend: Backend, f: SafetensorsFile, type: LycorisType, k: string, layer: { part: 'unet' | 'te'; path: string; shape: number[] }, name: string): Promise<LoadedModule & { noAlpha: boolean }> {
  const suffixes = [...f.tensors.keys()].filter((x) => x.startsWith(`${k}.`)).map((x) => x.slice(k.length + 1));
  const shape = (suffix: string) => f.tensors.get(`${k}.${suffix}`)?.shape;
  const rank = moduleRank(type, shape, layer);
  const noAlpha = !f.tensors.has(`${k}.alpha`);
  const alpha = noAlpha ? rank : (await f.readTensor(`${k}.alpha`))[0]!;
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw new Error(`${name}: ${k}.alpha is ${alpha}; it must be above 0 (the scale is alpha / rank)`);
  const spec = layerSpec(layer, rank, alpha);
  const { layout, outputAxis } = type === 'dora' ? doraAxis(moduleLayout(type, spec), shape('dora_scale'), layer.shape) : { layout: moduleLayout(type, spec), outputAxis: false };
  checkModule(type, k, suffixes, shape, layout, rank, name);
  const tensors = new Map<string, Tensor>();
  try {
    for (const p of layout.params) tensors.set(p.key, tensor(backend, await f.readTensor(`${k}.${p.key}`), p.shape));
  } catch (e) {
    for (const t of tensors.values()) t.dispose();
    throw e;
  }
  return { spec, layout, tensors, outputAxis, noAlpha };
}

/** The Adapter over one part's modules: each adapted layer's weight merged as `mergedWeight` builds it. */
function weightAdapter(type: LycorisType, modules: Map<string, LoadedModule>): Adapter {
  return {
    lowRank: () => null,
    convDelta: () => null,
    weight: (layer, w) => {
      const m = modules.get(layer);
      if (!m) return null;
      return m.outputAxis ? outputAxisDora(m, w) : mergedWeight(type, m.spec, (key) => m.tensors.get(key)!, m.layout.scale, w);
    },
    frozen: (layer) => !modules.has(layer),
  };
}

/**
 * Open a LoHa, LoKr or DoRA file for inference: every module whose layer the model has is checked
 * (keys and shapes as LyCORIS writes them, the rank from the shapes, alpha absent = rank) and uploaded;
 * modules the model lacks are left out with a note; DoRA's magnitude may be per input channel (ours,
 * A1111's) or per output row (LyCORIS' wd_on_out, which ComfyUI reads); forms not built here (Tucker,
 * a factored LoKr w1, DoRA on LoHa/LoKr) are refused by name.
 */
export async function loadLycorisInference(backend: Backend, f: SafetensorsFile, type: LycorisType, layers: AdaptableLayers, name: string): Promise<InferenceLora> {
  const names = [...new Set([...f.tensors.keys()].filter((x) => MARKER[type].test(x)).map((x) => x.replace(MARKER[type], '')))];
  const parts = { unet: new Map<string, LoadedModule>(), te: new Map<string, LoadedModule>() };
  const skipped: string[] = [];
  let noAlpha = 0;
  const dispose = () => [...parts.unet.values(), ...parts.te.values()].forEach((m) => m.tensors.forEach((t) => t.dispose()));
  try {
    for (const k of names) {
      const layer = layers.get(k);
      if (!layer) {
        skipped.push(k);
        continue;
      }
      const m = await loadModule(backend, f, type, k, layer, name);
      if (m.noAlpha) noAlpha++;
      parts[layer.part].set(layer.path, m);
    }
  } catch (e) {
    dispose();
    throw e;
  }
  const count = parts.unet.size + parts.te.size;
  if (!count) throw new Error(`${name}: none of its ${skipped.length} ${TYPE_NAME[type]} modules is a layer of this model (first: ${skipped[0]}); was it trained for another base model?`);
  const notes: string[] = [`${name}: a ${TYPE_NAME[type]} network (LyCORIS), applied as its merged weights`];
  if (skipped.length) notes.push(`${name}: ${skipped.length} of its ${skipped.length + count} modules are not layers of this model and are left out (first: ${skipped[0]})`);
  if (noAlpha) notes.push(`${name}: ${noAlpha} modules have no alpha; they are applied with alpha = rank (scale 1), as A1111 and ComfyUI do`);
  return {
    unet: weightAdapter(type, parts.unet),
    te: parts.te.size ? weightAdapter(type, parts.te) : null,
    modules: { unet: parts.unet.size, te: parts.te.size },
    notes,
    metadata: f.metadata,
    dispose,
  };
}
