// Loading an SD 1.x pipeline onto the GPU from a diffusers folder or a single-file checkpoint, one tensor at a time.
import type { Backend } from '../engine/backend.js';
import type { DType } from '../engine/dtype.js';
import { empty, keep, tensor, type Tensor } from '../engine/tensor.js';
import { clipWeightShapes, type ClipConfig } from './clip.js';
import { detectCheckpoint } from './detect.js';
import { CheckpointMismatchError, inferSingleFileConfigs, type SingleFileInfo } from './infer-config.js';
import { diffusersToLdmClip, diffusersToLdmUnet, diffusersToLdmVae, normalizeVaeDiffusersKey, vaeAttentionIsConvInLdm } from './keymap.js';
import type { WeightShapes, WeightStore } from './layers.js';
import { openSafetensors, type ByteSource, type SafetensorsFile, type TensorInfo } from './safetensors.js';
import { clipConfigFromJson, unetConfigFromJson, vaeConfigFromJson } from './tiny.js';
import { ClipTokenizer } from './tokenizer.js';
import { unetWeightShapes, type UNetConfig } from './unet.js';
import { vaeWeightShapes, type VaeConfig } from './vae.js';

export { CONFIG_METADATA_KEY, CheckpointMismatchError, type AssumedValue, type SingleFileInfo } from './infer-config.js';

/** Frozen weights on a device, by diffusers name. */
export class DeviceWeights implements WeightStore {
  private readonly map = new Map<string, Tensor>();
  get(name: string): Tensor {
    const t = this.map.get(name);
    if (!t) throw new Error(`missing weight ${name}`);
    return t;
  }
  has(name: string): boolean {
    return this.map.has(name);
  }
  set(name: string, t: Tensor): void {
    this.map.set(name, keep(t));
  }
  get bytes(): number {
    let b = 0;
    for (const t of this.map.values()) b += t.bytes;
    return b;
  }
  dispose(): void {
    for (const t of this.map.values()) t.dispose();
    this.map.clear();
  }
}

export interface Pipeline {
  unet: { config: UNetConfig; weights: DeviceWeights };
  clip: { config: ClipConfig; weights: DeviceWeights };
  vae: { config: VaeConfig; weights: DeviceWeights };
  tokenizer: ClipTokenizer;
  name: string;
  /** For a single file: the configurations read from its shapes, what was assumed, and notes (EMA skipped, ...). */
  info?: SingleFileInfo;
  /** The weight files read (diffusers repositories: which variant, fp16 or fp32, was taken). */
  files?: string[];
  dispose(): void;
}

export interface LoadProgress {
  /** What is being loaded, in words. */
  stage: string;
  loadedBytes: number;
  totalBytes: number;
}

export interface LoadOptions {
  /** Storage dtype of the frozen weights on the GPU (f16 halves memory; compute is f32 either way). */
  weightDtype?: DType;
  onProgress?: (p: LoadProgress) => void;
}

interface Part {
  stage: string;
  file: SafetensorsFile;
  shapes: WeightShapes;
  /** The file's key for a diffusers name (null when the file lacks it). */
  key(name: string): string | null;
  /** Shape fix-ups (VAE attention stored as 1x1 convs). */
  accept?(name: string, fileShape: number[], want: number[]): boolean;
  out: DeviceWeights;
}

async function upload(backend: Backend, parts: Part[], o: LoadOptions): Promise<void> {
  const dtype = o.weightDtype ?? 'f16';
  let total = 0;
  for (const p of parts) for (const name of p.shapes.keys()) {
    const k = p.key(name);
    const info = k ? p.file.tensors.get(k) : undefined;
    if (info) total += info.length;
  }
  let loaded = 0;
  for (const p of parts) {
    for (const [name, want] of p.shapes) {
      const k = p.key(name);
      const info = k ? p.file.tensors.get(k) : undefined;
      if (!k || !info) throw new CheckpointMismatchError(`${p.file.source.name} lacks ${p.stage} weight ${k ?? name}: the file is incomplete or not an SD 1.x checkpoint of this configuration`);
      const same = info.shape.length === want.length && info.shape.every((d, i) => d === want[i]);
      if (!same && !p.accept?.(name, info.shape, want))
        throw new CheckpointMismatchError(`${p.file.source.name}: ${k} has shape [${info.shape}] but this ${p.stage} configuration needs [${want}]`);
      p.out.set(name, await weightTensor(backend, p.file, k, info, want, dtype));
      loaded += info.length;
      o.onProgress?.({ stage: p.stage, loadedBytes: loaded, totalBytes: total });
    }
  }
}

const littleEndian = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * One frozen weight on the device. F16 tensors stored as f16 go up as the file's bytes (the
 * engine's f16 layout is little-endian halves, two to a u32), with no f32 round trip; BF16 and
 * F32 are decoded once and rounded once, and f32 storage decodes whatever the file holds.
 */
async function weightTensor(backend: Backend, file: SafetensorsFile, key: string, info: TensorInfo, shape: number[], dtype: DType): Promise<Tensor> {
  if (backend.kind === 'meta') return empty(backend, shape, dtype);
  if (dtype !== 'f16' || info.dtype !== 'F16' || !littleEndian) return tensor(backend, await file.readTensor(key), shape, dtype);
  const raw = await file.readRaw(key);
  const t = empty(backend, shape, 'f16');
  // writeBuffer takes whole 4-byte words: an odd element count gets a zero half of padding.
  const bytes = raw.byteLength % 4 ? padTo4(raw) : raw;
  backend.write(t.storage, t.offset, bytes);
  return t;
}

function padTo4(raw: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(raw.byteLength / 4) * 4);
  out.set(raw);
  return out;
}

const vaeAccept = (name: string, s: number[], want: number[]) => vaeAttentionIsConvInLdm(name) && s.length === 4 && s[0] === want[0] && s[1] === want[1] && s[2] === 1 && s[3] === 1;

/** Reads files of a diffusers repository (a folder, a hub repo, the bundled demo). */
export interface RepoFiles {
  name: string;
  open(path: string): Promise<ByteSource>;
  text(path: string): Promise<string>;
  /**
   * Whether the repository has a file, without downloading it: 'local' when reading it costs no
   * download (a folder, the browser cache), 'remote' when it would be downloaded, 'missing'. With
   * `localOnly`, 'unknown' instead of asking the network. Repositories without it have their
   * weight files tried by opening them in turn, the full-precision file first.
   */
  locate?(path: string, o?: { localOnly?: boolean }): Promise<FileWhere>;
}

export type FileWhere = 'local' | 'remote' | 'missing' | 'unknown';

/** A component's weight files in diffusers layout: the full-precision name and its `fp16` variant. */
function weightFiles(folder: string, base: string, o: LoadOptions): string[] {
  const full = `${folder}/${base}.safetensors`, half = `${folder}/${base}.fp16.safetensors`;
  // The fp16 variant is half the download and what f16 storage keeps anyway; f32 storage wants the full file.
  return (o.weightDtype ?? 'f16') === 'f16' ? [half, full] : [full, half];
}

/**
 * Which of a component's weight files to open, in preference order: one already local first, then
 * the first the repository has (asked without downloading), the last candidate without asking
 * (opening it says why it failed). Repositories that cannot be asked get every candidate, full
 * precision first, to open in turn as before.
 */
async function chooseWeightFile(files: RepoFiles, paths: string[]): Promise<string[]> {
  const locate = files.locate?.bind(files);
  if (!locate) return [...paths].sort((a, b) => Number(a.includes('.fp16.')) - Number(b.includes('.fp16.')));
  for (const p of paths) if ((await locate(p, { localOnly: true })) === 'local') return [p];
  for (const p of paths.slice(0, -1)) {
    // A failed question (offline, say) moves on: a later candidate may be cached or say more.
    const where = await locate(p).catch((): FileWhere => 'unknown');
    if (where === 'remote' || where === 'local') return [p];
  }
  return paths.slice(-1);
}

async function firstExisting(files: RepoFiles, paths: string[]): Promise<ByteSource> {
  // Every path's reason: the first may have failed for a cut download, the second for not existing.
  const why: string[] = [];
  for (const p of paths) {
    try {
      return await files.open(p);
    } catch (e) {
      if (paths.length === 1) throw e;
      why.push((e as Error)?.message ?? 'missing');
    }
  }
  throw new CheckpointMismatchError(`${files.name}: none of ${paths.join(', ')} could be read (${why.join('; ')}); is this a diffusers SD 1.x repository with safetensors weights?`);
}

async function json(files: RepoFiles, path: string): Promise<Record<string, unknown>> {
  const t = await files.text(path);
  try {
    return JSON.parse(t);
  } catch {
    throw new CheckpointMismatchError(`${files.name}/${path} is not valid JSON`);
  }
}

/** Load a diffusers-layout SD 1.x repository: unet/, text_encoder/, vae/, tokenizer/. Takes the `fp16` weight files when the repository has them (and f16 storage is asked for). */
export async function loadDiffusers(backend: Backend, files: RepoFiles, o: LoadOptions = {}): Promise<Pipeline> {
  const unetCfg = unetConfigFromJson(await json(files, 'unet/config.json'));
  const clipCfg = clipConfigFromJson(await json(files, 'text_encoder/config.json'));
  const vaeCfg = vaeConfigFromJson(await json(files, 'vae/config.json'));
  const tokenizer = ClipTokenizer.fromFiles(await files.text('tokenizer/vocab.json'), await files.text('tokenizer/merges.txt'));
  // Choose all three variants before downloading any, so that what a repository lacks is learnt once.
  const choices = [];
  for (const [folder, base] of [['unet', 'diffusion_pytorch_model'], ['text_encoder', 'model'], ['vae', 'diffusion_pytorch_model']] as const)
    choices.push(await chooseWeightFile(files, weightFiles(folder, base, o)));
  const opened: SafetensorsFile[] = [];
  const p = emptyPipeline(files.name, unetCfg, clipCfg, vaeCfg, tokenizer);
  try {
    const open = async (paths: string[], expect: 'unet' | 'text-encoder' | 'vae') => {
      const src = await firstExisting(files, paths);
      const f = await openSafetensors(src).catch(async (e: unknown) => {
        await src.close?.();
        throw e;
      });
      opened.push(f);
      detectCheckpoint(f.tensors, { file: src.name, expect });
      return f;
    };
    const uf = await open(choices[0]!, 'unet');
    const tf = await open(choices[1]!, 'text-encoder');
    const vf = await open(choices[2]!, 'vae');
    p.files = opened.map((f) => f.source.name);
    const vaeKeys = new Map([...vf.tensors.keys()].map((k) => [normalizeVaeDiffusersKey(k), k]));
    await upload(backend, [
      { stage: 'U-Net', file: uf, shapes: unetWeightShapes(unetCfg), key: (n) => n, out: p.unet.weights },
      { stage: 'text encoder', file: tf, shapes: clipWeightShapes(clipCfg), key: (n) => n, out: p.clip.weights },
      { stage: 'VAE', file: vf, shapes: vaeWeightShapes(vaeCfg), key: (n) => vaeKeys.get(n) ?? null, accept: vaeAccept, out: p.vae.weights },
    ], o);
    return p;
  } catch (e) {
    p.dispose();
    throw e;
  } finally {
    await Promise.all(opened.map((f) => f.source.close?.()));
  }
}

/**
 * Load a single-file (LDM layout) SD 1.x checkpoint. The configurations are read from the tensor
 * shapes (see `inferSingleFileConfigs`; the result, with what was assumed, is the pipeline's
 * `info`). EMA weights are skipped. The tokenizer is not in such files; SD 1.x always uses CLIP
 * ViT-L/14's, which the caller provides. The source is closed when this returns or fails.
 */
export async function loadSingleFile(backend: Backend, src: ByteSource, tokenizer: ClipTokenizer, o: LoadOptions = {}): Promise<Pipeline> {
  let p: Pipeline | null = null;
  try {
    const f = await openSafetensors(src);
    const found = detectCheckpoint(f.tensors, { file: src.name });
    const info = inferSingleFileConfigs(f.tensors, f.metadata, src.name);
    const clipForm = found.layout === 'single-file' ? found.clipForm : info.clipForm;
    const { unet, clip, vae } = info;
    p = emptyPipeline(src.name, unet, clip, vae, tokenizer);
    p.info = info;
    p.files = [src.name];
    await upload(backend, [
      { stage: 'U-Net', file: f, shapes: unetWeightShapes(unet), key: (n) => diffusersToLdmUnet(n, unet), out: p.unet.weights },
      { stage: 'text encoder', file: f, shapes: clipWeightShapes(clip), key: (n) => diffusersToLdmClip(n, clipForm), out: p.clip.weights },
      { stage: 'VAE', file: f, shapes: vaeWeightShapes(vae), key: (n) => diffusersToLdmVae(n, vae), accept: vaeAccept, out: p.vae.weights },
    ], o);
    return p;
  } catch (e) {
    p?.dispose();
    throw e;
  } finally {
    await src.close?.();
  }
}

function emptyPipeline(name: string, unet: UNetConfig, clip: ClipConfig, vae: VaeConfig, tokenizer: ClipTokenizer): Pipeline {
  const p: Pipeline = {
    name,
    unet: { config: unet, weights: new DeviceWeights() },
    clip: { config: clip, weights: new DeviceWeights() },
    vae: { config: vae, weights: new DeviceWeights() },
    tokenizer,
    files: [],
    dispose: () => {
      p.unet.weights.dispose();
      p.clip.weights.dispose();
      p.vae.weights.dispose();
    },
  };
  return p;
}

/** Shape-only weights of a configuration on the meta device (memory and FLOP estimates without a checkpoint). */
export function metaWeights(backend: Backend, shapes: WeightShapes, dtype: DType = 'f16'): DeviceWeights {
  const w = new DeviceWeights();
  for (const [n, s] of shapes) w.set(n, empty(backend, s, dtype));
  return w;
}
