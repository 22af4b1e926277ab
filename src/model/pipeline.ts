// Loading an SD 1.x pipeline onto the GPU from a diffusers folder or a single-file checkpoint, one tensor at a time.
import type { Backend } from '../engine/backend.js';
import type { DType } from '../engine/dtype.js';
import { empty, keep, tensor, type Tensor } from '../engine/tensor.js';
import { clipWeightShapes, SD15_CLIP, type ClipConfig } from './clip.js';
import { detectCheckpoint } from './detect.js';
import { clipLdmForm, diffusersToLdmClip, diffusersToLdmUnet, diffusersToLdmVae, normalizeVaeDiffusersKey, vaeAttentionIsConvInLdm } from './keymap.js';
import type { WeightShapes, WeightStore } from './layers.js';
import { openSafetensors, type ByteSource, type SafetensorsFile } from './safetensors.js';
import { clipConfigFromJson, unetConfigFromJson, vaeConfigFromJson } from './tiny.js';
import { ClipTokenizer } from './tokenizer.js';
import { SD15_UNET, unetWeightShapes, type UNetConfig } from './unet.js';
import { SD15_VAE, vaeWeightShapes, type VaeConfig } from './vae.js';

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

/** A missing or mismatched weight: names the file, the tensor and the shapes. */
export class CheckpointMismatchError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'CheckpointMismatchError';
  }
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
      if (backend.kind === 'meta') p.out.set(name, empty(backend, want, dtype));
      else p.out.set(name, tensor(backend, await p.file.readTensor(k), want, dtype));
      loaded += info.length;
      o.onProgress?.({ stage: p.stage, loadedBytes: loaded, totalBytes: total });
    }
  }
}

const vaeAccept = (name: string, s: number[], want: number[]) => vaeAttentionIsConvInLdm(name) && s.length === 4 && s[0] === want[0] && s[1] === want[1] && s[2] === 1 && s[3] === 1;

/** Reads files of a diffusers repository (a folder, a hub repo, the bundled demo). */
export interface RepoFiles {
  name: string;
  open(path: string): Promise<ByteSource>;
  text(path: string): Promise<string>;
}

async function firstExisting(files: RepoFiles, paths: string[]): Promise<ByteSource> {
  // Every path's reason: the first may have failed for a cut download, the second for not existing.
  const why: string[] = [];
  for (const p of paths) {
    try {
      return await files.open(p);
    } catch (e) {
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

/** Load a diffusers-layout SD 1.x repository: unet/, text_encoder/, vae/, tokenizer/. */
export async function loadDiffusers(backend: Backend, files: RepoFiles, o: LoadOptions = {}): Promise<Pipeline> {
  const unetCfg = unetConfigFromJson(await json(files, 'unet/config.json'));
  const clipCfg = clipConfigFromJson(await json(files, 'text_encoder/config.json'));
  const vaeCfg = vaeConfigFromJson(await json(files, 'vae/config.json'));
  const tokenizer = ClipTokenizer.fromFiles(await files.text('tokenizer/vocab.json'), await files.text('tokenizer/merges.txt'));
  const uf = await openSafetensors(await firstExisting(files, ['unet/diffusion_pytorch_model.safetensors', 'unet/diffusion_pytorch_model.fp16.safetensors']));
  detectCheckpoint(uf.tensors, { file: uf.source.name, expect: 'unet' });
  const tf = await openSafetensors(await firstExisting(files, ['text_encoder/model.safetensors', 'text_encoder/model.fp16.safetensors']));
  detectCheckpoint(tf.tensors, { file: tf.source.name, expect: 'text-encoder' });
  const vf = await openSafetensors(await firstExisting(files, ['vae/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.fp16.safetensors']));
  detectCheckpoint(vf.tensors, { file: vf.source.name, expect: 'vae' });
  const vaeKeys = new Map([...vf.tensors.keys()].map((k) => [normalizeVaeDiffusersKey(k), k]));
  const p = emptyPipeline(files.name, unetCfg, clipCfg, vaeCfg, tokenizer);
  await upload(backend, [
    { stage: 'U-Net', file: uf, shapes: unetWeightShapes(unetCfg), key: (n) => n, out: p.unet.weights },
    { stage: 'text encoder', file: tf, shapes: clipWeightShapes(clipCfg), key: (n) => n, out: p.clip.weights },
    { stage: 'VAE', file: vf, shapes: vaeWeightShapes(vaeCfg), key: (n) => vaeKeys.get(n) ?? null, accept: vaeAccept, out: p.vae.weights },
  ], o);
  await Promise.all([uf, tf, vf].map((f) => f.source.close?.()));
  return p;
}

/** Metadata key under which our own single files (the tiny demo) record their configuration. */
export const CONFIG_METADATA_KEY = 'lorasmith.configs';

/**
 * Load a single-file (LDM layout) SD 1.x checkpoint. The tokenizer is not in such files; SD 1.x
 * always uses CLIP ViT-L/14's, which the caller provides.
 */
export async function loadSingleFile(backend: Backend, src: ByteSource, tokenizer: ClipTokenizer, o: LoadOptions = {}): Promise<Pipeline> {
  const f = await openSafetensors(src);
  detectCheckpoint(f.tensors, { file: src.name });
  let unetCfg = SD15_UNET, clipCfg = SD15_CLIP, vaeCfg = SD15_VAE;
  const own = f.metadata[CONFIG_METADATA_KEY];
  if (own) {
    const c = JSON.parse(own) as { unet: Record<string, unknown>; text_encoder: Record<string, unknown>; vae: Record<string, unknown> };
    unetCfg = unetConfigFromJson(c.unet);
    clipCfg = clipConfigFromJson(c.text_encoder);
    vaeCfg = vaeConfigFromJson(c.vae);
  }
  const clipForm = clipLdmForm(f.tensors.keys());
  const p = emptyPipeline(src.name, unetCfg, clipCfg, vaeCfg, tokenizer);
  await upload(backend, [
    { stage: 'U-Net', file: f, shapes: unetWeightShapes(unetCfg), key: (n) => diffusersToLdmUnet(n, unetCfg), out: p.unet.weights },
    { stage: 'text encoder', file: f, shapes: clipWeightShapes(clipCfg), key: (n) => diffusersToLdmClip(n, clipForm), out: p.clip.weights },
    { stage: 'VAE', file: f, shapes: vaeWeightShapes(vaeCfg), key: (n) => diffusersToLdmVae(n, vaeCfg), accept: vaeAccept, out: p.vae.weights },
  ], o);
  await src.close?.();
  return p;
}

function emptyPipeline(name: string, unet: UNetConfig, clip: ClipConfig, vae: VaeConfig, tokenizer: ClipTokenizer): Pipeline {
  const p: Pipeline = {
    name,
    unet: { config: unet, weights: new DeviceWeights() },
    clip: { config: clip, weights: new DeviceWeights() },
    vae: { config: vae, weights: new DeviceWeights() },
    tokenizer,
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
