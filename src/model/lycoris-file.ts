// LoHa, LoKr and DoRA files in LyCORIS' layout (the keys A1111/Forge and ComfyUI load), written and read back to continue.
import { kohyaName, type LoraInit, type LoraModuleSpec } from './lora.js';
import { readLoraFile, toF16, writeHashedSafetensors, type LoraFileContents, type SavePrecision } from './lora-file.js';
import { LYCORIS_ALGO, moduleLayout, NETWORK_TYPES, type NetworkType } from './lycoris.js';
import { bytesSource, openSafetensors } from './safetensors.js';

/** Host copies of one module's tensors by key (`hada_w1_a`, ...), in the engine's layout. */
export interface LycorisWeights {
  spec: LoraModuleSpec;
  tensors: Map<string, Float32Array>;
}

/** Words for a type in messages. */
const TYPE_NAME: Record<NetworkType, string> = { lora: 'LoRA', loha: 'LoHa', lokr: 'LoKr', dora: 'DoRA' };

/**
 * Serialize a LoHa, LoKr or DoRA network: per module its tensors under LyCORIS' keys with the
 * shapes LyCORIS writes (convs 4-D where it keeps them so, `hada_*_b` and `lokr_w2_b` 2-D) and a
 * scalar `alpha`, in the save precision, with kohya's hashes as `writeLoraFile` computes them.
 */
export function writeLycorisFile(type: Exclude<NetworkType, 'lora'>, modules: readonly LycorisWeights[], metadata: Record<string, string>, precision: SavePrecision = 'fp16'): Promise<Uint8Array> {
  const dtype = precision === 'fp16' ? ('F16' as const) : ('F32' as const);
  const conv = (a: Float32Array) => (precision === 'fp16' ? toF16(a) : a);
  const tensors = modules.flatMap(({ spec, tensors: t }) => {
    const layout = moduleLayout(type, spec);
    const name = kohyaName(spec);
    return [
      ...layout.params.map((p) => {
        const data = t.get(p.key);
        if (!data) throw new Error(`writeLycorisFile: ${name} has no ${p.key}`);
        return { name: `${name}.${p.key}`, dtype, shape: p.fileShape, data: conv(data) };
      }),
      { name: `${name}.alpha`, dtype, shape: [] as number[], data: conv(Float32Array.of(layout.fileAlpha)) },
    ];
  });
  return writeHashedSafetensors(tensors, metadata);
}

/** kohya's `ss_network_module` and `ss_network_args` for a type, as LyCORIS' kohya wrapper writes them. */
export function networkMetadata(type: NetworkType, n: { convDim: number; convAlpha: number }, dropout: number): Record<string, string> {
  if (type === 'lora') return {};
  const args: Record<string, string> = { algo: LYCORIS_ALGO[type], ...(n.convDim > 0 ? { conv_dim: String(n.convDim), conv_alpha: String(n.convAlpha) } : {}), dropout: String(dropout) };
  if (type === 'dora') args.dora_wd = 'True';
  return { ss_network_module: 'lycoris.kohya', ss_network_args: JSON.stringify(args) };
}

/** Which type a file's keys are (the LyCORIS key each type alone has; LoHa and LoKr before DoRA, whose dora_scale they may carry too, whatever the key order), or null when none is recognised. */
export function detectNetworkType(keys: Iterable<string>): NetworkType | null {
  const seen = new Set<NetworkType>();
  for (const k of keys) {
    if (k.includes('.hada_w1_')) return 'loha';
    if (k.includes('.lokr_w')) seen.add('lokr');
    else if (k.endsWith('.dora_scale')) seen.add('dora');
    else if (k.endsWith('.lora_down.weight')) seen.add('lora');
  }
  return (['lokr', 'dora', 'lora'] as const).find((t) => seen.has(t)) ?? null;
}

/** The rank a module's file tensors were trained at (LoKr with a full w2 has none: the settings' stands). */
function fileRank(type: Exclude<NetworkType, 'lora'>, k: string, shapes: Map<string, number[]>, fallback: number): number {
  const s = shapes.get(`${k}.${type === 'loha' ? 'hada_w1_b' : type === 'lokr' ? 'lokr_w2_b' : 'lora_down.weight'}`);
  return s ? s[0]! : fallback;
}

/**
 * Read a LoHa, LoKr or DoRA file back to continue training it: per module its tensors in the
 * engine's layout, with the file's rank (from the shapes) and alpha (absent: the rank, as the
 * loaders read it). Every tensor is checked against the module that will receive it.
 */
async function readLycorisFile(type: Exclude<NetworkType, 'lora'>, bytes: Uint8Array, specs: readonly LoraModuleSpec[], name: string): Promise<LoraFileContents> {
  const f = await openSafetensors(bytesSource(bytes, name));
  const shapes = new Map([...f.tensors].map(([k, t]) => [k, t.shape]));
  const weights = new Map<string, LoraInit>();
  const missing: string[] = [];
  for (const spec of specs) {
    const k = kohyaName(spec);
    const rank = fileRank(type, k, shapes, spec.rank);
    const layout = moduleLayout(type, { ...spec, rank });
    if (!layout.params.every((p) => shapes.has(`${k}.${p.key}`))) {
      missing.push(k);
      continue;
    }
    const tensors = new Map<string, Float32Array>();
    for (const p of layout.params) {
      const got = shapes.get(`${k}.${p.key}`)!;
      if (got.length !== p.fileShape.length || got.some((d, i) => d !== p.fileShape[i]))
        throw new Error(`${name}: ${k}.${p.key} has shape [${got}] but this model's layer needs [${p.fileShape}] for ${TYPE_NAME[type]} at rank ${rank} (another base model, or other conv dim or rank settings?)`);
      tensors.set(p.key, await f.readTensor(`${k}.${p.key}`));
    }
    const alpha = shapes.has(`${k}.alpha`) ? (await f.readTensor(`${k}.alpha`))[0]! : rank;
    if (!(alpha > 0) || !Number.isFinite(alpha)) throw new Error(`${name}: ${k}.alpha is ${alpha}; it must be above 0 (the scale is alpha / rank)`);
    weights.set(k, { down: new Float32Array(0), up: new Float32Array(0), rank, alpha: Math.abs(alpha - spec.alpha) <= 1e-3 * spec.alpha ? spec.alpha : alpha, tensors });
  }
  if (missing.length) throw new Error(`${name} lacks ${missing.length} of the ${specs.length} ${TYPE_NAME[type]} modules this run trains (first: ${missing[0]}); was it trained with the same targets, text-encoder and conv dim settings?`);
  const changed = [...weights.values()].filter((w, i) => w.rank !== specs[i]!.rank || w.alpha !== specs[i]!.alpha).length;
  const notes = changed ? [`${name}: ${changed} modules have another rank or alpha than the settings'; training continues with the file's`] : [];
  return { weights, notes };
}

/**
 * Read a network file to continue it as `type`: a kohya LoRA through `readLoraFile`, the LyCORIS
 * types here. A file of another type than the settings' is refused, naming both.
 */
export async function readNetworkFile(bytes: Uint8Array, specs: readonly LoraModuleSpec[], type: NetworkType, name = 'LoRA file'): Promise<LoraFileContents> {
  const f = await openSafetensors(bytesSource(bytes, name));
  const found = detectNetworkType(f.tensors.keys());
  if (found && found !== type)
    throw new Error(`${name} is a ${TYPE_NAME[found]} file but the network type is ${TYPE_NAME[type]}: set the network type to ${TYPE_NAME[found]} (networkType "${found}") to continue it`);
  if (!found) throw new Error(`${name} holds no network tensors this trainer knows (${NETWORK_TYPES.map((t) => TYPE_NAME[t]).join(', ')})`);
  return type === 'lora' ? readLoraFile(bytes, specs, name) : readLycorisFile(type, bytes, specs, name);
}
