// The CLIP ViT-L/14 text encoder as SD 1.x uses it (diffusers CLIPTextModel names), config-driven.
import { add, attention, embedding, quickGelu } from '../engine/index.js';
import type { Tensor } from '../engine/tensor.js';
import { addLinear, addNorm, type Layers, type WeightShapes } from './layers.js';

export interface ClipConfig {
  vocabSize: number;
  maxPositions: number;
  width: number;
  layers: number;
  heads: number;
  mlp: number;
}

/** SD 1.x's text encoder (123M parameters). */
export const SD15_CLIP: ClipConfig = { vocabSize: 49408, maxPositions: 77, width: 768, layers: 12, heads: 12, mlp: 3072 };

const P = 'text_model';

/** Every weight by diffusers name (`text_model.*`) with its shape. */
export function clipWeightShapes(c: ClipConfig): WeightShapes {
  const m: WeightShapes = new Map();
  m.set(`${P}.embeddings.token_embedding.weight`, [c.vocabSize, c.width]);
  m.set(`${P}.embeddings.position_embedding.weight`, [c.maxPositions, c.width]);
  for (let i = 0; i < c.layers; i++) {
    const l = `${P}.encoder.layers.${i}`;
    addNorm(m, `${l}.layer_norm1`, c.width);
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) addLinear(m, `${l}.self_attn.${p}`, c.width, c.width);
    addNorm(m, `${l}.layer_norm2`, c.width);
    addLinear(m, `${l}.mlp.fc1`, c.mlp, c.width);
    addLinear(m, `${l}.mlp.fc2`, c.width, c.mlp);
  }
  addNorm(m, `${P}.final_layer_norm`, c.width);
  return m;
}

/** The module paths kohya's LoRA adapts in each layer. */
export function clipLoraTargets(c: ClipConfig): string[] {
  const out: string[] = [];
  for (let i = 0; i < c.layers; i++) {
    const l = `${P}.encoder.layers.${i}`;
    for (const p of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'mlp.fc1', 'mlp.fc2']) out.push(`${l}.${p}`);
  }
  return out;
}

/**
 * Encode token ids [B, T] (flattened, T = maxPositions) into hidden states [B, T, width].
 * `clipSkip` n (A1111/kohya convention) stops n-1 layers before the last; the final LayerNorm is
 * applied in every case, as SD 1.x pipelines do.
 */
export function clipForward(L: Layers, c: ClipConfig, ids: ArrayLike<number>, batch: number, clipSkip = 1): Tensor {
  const T = ids.length / batch;
  if (!Number.isInteger(T) || T > c.maxPositions) throw new Error(`clipForward: ${ids.length} ids do not split into ${batch} rows of at most ${c.maxPositions}`);
  if (!Number.isInteger(clipSkip) || clipSkip < 1 || clipSkip > c.layers) throw new Error(`clip skip must be an integer from 1 to ${c.layers}, got ${clipSkip}`);
  const tok = embedding(L.weights.get(`${P}.embeddings.token_embedding.weight`), ids, [batch, T]);
  const pos = embedding(L.weights.get(`${P}.embeddings.position_embedding.weight`), Array.from({ length: T }, (_, i) => i), [T]);
  let h = add(tok, pos);
  const layers = c.layers - (clipSkip - 1);
  for (let i = 0; i < layers; i++) {
    const l = `${P}.encoder.layers.${i}`;
    const n1 = L.layerNorm(`${l}.layer_norm1`, h);
    const [q, k, v] = L.linears([`${l}.self_attn.q_proj`, `${l}.self_attn.k_proj`, `${l}.self_attn.v_proj`], n1) as [Tensor, Tensor, Tensor];
    // The residual adds run in the epilogues of out_proj's and fc2's GEMMs.
    h = L.linear(`${l}.self_attn.out_proj`, attention(q, k, v, { heads: c.heads, causal: true }), h);
    const n2 = L.layerNorm(`${l}.layer_norm2`, h);
    h = L.linear(`${l}.mlp.fc2`, quickGelu(L.linear(`${l}.mlp.fc1`, n2)), h);
  }
  return L.layerNorm(`${P}.final_layer_norm`, h);
}
