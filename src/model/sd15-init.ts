// SD 1.5's tensors with seeded random values: the plan (names, shapes, init scale) and each tensor's f16 bits, for the
// CLI's full-size test checkpoint and for tests that rebuild one layer of it without the 2 GB file.
import { f32ToF16Bits } from '../engine/dtype.js';
import { rng } from '../engine/testing/allclose.js';
import { clipWeightShapes, SD15_CLIP } from './clip.js';
import { diffusersToLdmClip, diffusersToLdmUnet, diffusersToLdmVae, vaeAttentionIsConvInLdm } from './keymap.js';
import { SD15_UNET, unetWeightShapes } from './unet.js';
import { SD15_VAE, vaeWeightShapes } from './vae.js';

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

/** Elements of a shape. */
export const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

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
  const r = rng(hash(t.name, seed));
  for (let i = 0; i < n; i++) out[i] = f32ToF16Bits(t.center - t.bound + 2 * t.bound * r());
  return out;
}
