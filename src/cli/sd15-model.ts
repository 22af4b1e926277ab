// Writes an SD 1.5-shaped single-file checkpoint (LDM names, f16, ~2 GB) with seeded random weights, streamed tensor by tensor.
import { closeSync, existsSync, mkdirSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { formatBytes } from '../engine/bytes.js';
import { f32ToF16Bits } from '../engine/dtype.js';
import { clipWeightShapes, SD15_CLIP } from '../model/clip.js';
import { diffusersToLdmClip, diffusersToLdmUnet, diffusersToLdmVae, vaeAttentionIsConvInLdm } from '../model/keymap.js';
import { SD15_UNET, unetWeightShapes } from '../model/unet.js';
import { SD15_VAE, vaeWeightShapes } from '../model/vae.js';

/** Where `npm run sd15-model` writes and `npm run bench -- --sd15` reads (outside the repository: 2 GB is never committed). */
export const SD15_MODEL_PATH = process.env.LORASMITH_SD15 ?? join(homedir(), '.cache/lorasmith/sd15-random-f16.safetensors');

/** One tensor of the file: its single-file name, shape, and how its values are drawn. */
export interface PlannedTensor {
  name: string;
  shape: number[];
  /** Values are uniform in ±bound (std bound/√3) around `center`. */
  center: number;
  bound: number;
}

/**
 * How each weight is initialised so activations stay O(1) through the full depth: weights with
 * variance 1/fan_in (LeCun: each layer keeps its input's scale; GroupNorm/LayerNorm renormalise
 * every block), norms' weights 1 and biases 0, embeddings with std 0.02 (CLIP's own init).
 */
export function initFor(diffusersName: string, shape: readonly number[]): { center: number; bound: number } {
  const s3 = Math.sqrt(3);
  if (/(norm[^.]*|layer_norm\d?|group_norm)\.weight$/.test(diffusersName)) return { center: 1, bound: 0 };
  if (diffusersName.endsWith('.bias')) return { center: 0, bound: 0 };
  if (diffusersName.includes('embeddings.')) return { center: 0, bound: 0.02 * s3 };
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  return { center: 0, bound: s3 / Math.sqrt(fanIn) };
}

/** Every tensor of SD 1.5 (U-Net, CLIP ViT-L/14, VAE) under its single-file name, sorted by name. */
export function sd15Plan(): PlannedTensor[] {
  const out: PlannedTensor[] = [];
  const add = (shapes: Map<string, number[]>, rename: (n: string) => string, reshape: (n: string, s: number[]) => number[] = (_n, s) => s) => {
    for (const [n, s] of shapes) out.push({ name: rename(n), shape: reshape(n, s), ...initFor(n, s) });
  };
  add(unetWeightShapes(SD15_UNET), (n) => diffusersToLdmUnet(n, SD15_UNET));
  add(clipWeightShapes(SD15_CLIP), (n) => diffusersToLdmClip(n));
  add(vaeWeightShapes(SD15_VAE), (n) => diffusersToLdmVae(n, SD15_VAE), (n, s) => (vaeAttentionIsConvInLdm(n) ? [...s, 1, 1] : s));
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** The safetensors header (length prefix included) for tensors laid out in the given order, all F16. */
function header(plan: readonly PlannedTensor[], metadata: Record<string, string>): Uint8Array {
  const h: Record<string, unknown> = { __metadata__: metadata };
  let end = 0;
  for (const t of plan) {
    const len = 2 * numel(t.shape);
    h[t.name] = { dtype: 'F16', shape: t.shape, data_offsets: [end, end + len] };
    end += len;
  }
  const json = new TextEncoder().encode(JSON.stringify(h));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  out.set(json, 8);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  return out;
}

/** FNV-1a of a name, so each tensor's stream depends on its name and the seed, not on the order. */
function hash(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** The tensor's f16 bits (mulberry32 stream; constant tensors skip the generator). */
export function tensorBits(t: PlannedTensor, seed: number): Uint16Array {
  const n = numel(t.shape);
  const out = new Uint16Array(n);
  if (t.bound === 0) return out.fill(f32ToF16Bits(t.center));
  let s = hash(t.name, seed);
  const scale = (2 * t.bound) / 4294967296;
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    out[i] = f32ToF16Bits(t.center - t.bound + ((z ^ (z >>> 14)) >>> 0) * scale);
  }
  return out;
}

/**
 * Write the checkpoint to `path` (through a temporary file renamed at the end, so a cut run never
 * leaves a truncated file behind). One tensor is in memory at a time (the largest, CLIP's token
 * embedding, is 76 MB in f16). Returns the bytes written.
 */
export function writeSd15Model(path: string, seed = 15, onTensor?: (done: number, total: number, bytes: number) => void): number {
  const plan = sd15Plan();
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.partial`;
  const fd = openSync(tmp, 'w');
  let bytes = 0;
  try {
    const put = (a: Uint8Array) => {
      for (let off = 0; off < a.length; ) off += writeSync(fd, a, off, a.length - off);
      bytes += a.length;
    };
    put(header(plan, { format: 'pt', note: `LoRASmith: SD 1.5-shaped checkpoint with seeded random weights (seed ${seed}), for benchmarks; not a usable model` }));
    plan.forEach((t, i) => {
      const bits = tensorBits(t, seed);
      put(new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength));
      onTensor?.(i + 1, plan.length, bytes);
    });
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return bytes;
}

if (process.argv[1] && resolve(process.argv[1]).endsWith('sd15-model.ts')) {
  const path = resolve(process.argv.find((a, i) => i > 1 && !a.startsWith('--')) ?? SD15_MODEL_PATH);
  if (existsSync(path) && !process.argv.includes('--force')) {
    console.log(`${path} exists (${formatBytes(statSync(path).size)}); --force writes it again`);
  } else {
    const t0 = performance.now();
    let last = 0;
    const bytes = writeSd15Model(path, 15, (done, total, b) => {
      if (performance.now() - last > 1000 || done === total) {
        last = performance.now();
        process.stdout.write(`\rtensor ${done}/${total}, ${formatBytes(b)}`);
      }
    });
    console.log(`\nwrote ${path}: ${formatBytes(bytes)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
}
