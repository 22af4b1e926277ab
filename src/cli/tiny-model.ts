// Regenerates the tiny demo pipeline in public/: deterministic random weights in both checkpoint layouts and a small tokenizer.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { f32ToF16Bits } from '../engine/dtype.js';
import { rng } from '../engine/testing/allclose.js';
import { clipWeightShapes } from '../model/clip.js';
import { diffusersToLdmClip, diffusersToLdmUnet, diffusersToLdmVae, vaeAttentionIsConvInLdm } from '../model/keymap.js';
import type { WeightShapes } from '../model/layers.js';
import { CONFIG_METADATA_KEY } from '../model/pipeline.js';
import { writeSafetensors, type TensorToWrite } from '../model/safetensors.js';
import { clipConfigJson, TINY_CLIP, TINY_UNET, TINY_VAE, unetConfigJson, vaeConfigJson } from '../model/tiny.js';
import { buildTinyVocab } from '../model/tiny-vocab.js';
import { unetWeightShapes } from '../model/unet.js';
import { vaeWeightShapes } from '../model/vae.js';

/** Words the tiny tokenizer learns its merges from: the bundled captions' vocabulary and common prompt words. */
const CORPUS = `a photo of a cat dog astronaut coffee cup rocket coins camera man woman person portrait face hair eyes
smile red green blue yellow white black brown orange purple pink gray grey light dark bright shadow sunny cloudy sky
tree flower grass leaves garden house street city building window door table chair book wall floor water sea river lake
beach mountain snow rain night day morning evening close up closeup detailed highly masterpiece best quality sharp focus
blurry background foreground colorful painting drawing sketch illustration style art of in on with and the at by from to
space suit helmet moon mars riding horse standing sitting looking wearing holding old young small large big round square
textured metal wood stone glass paper fabric plastic skin fur feathers cell nucleus microscope page text letters coin
brick wall chelsea motorcycle bike car boat plane train hubble galaxy stars nebula 1 2 3 4 5 6 7 8 9 0 , . ! ? ( ) : -`;

/** PyTorch-like initialisation: weights U(±1/√fan_in), norms near 1, biases small, embeddings N(0, 0.02)-ish. */
function init(shapes: WeightShapes, seed: number): Map<string, Float32Array> {
  const r = rng(seed);
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const u = () => 2 * r() - 1;
    let v: Float32Array;
    if (/norm[^.]*\.weight$|layer_norm\d?\.weight$|group_norm\.weight$/.test(name)) v = Float32Array.from({ length: n }, () => 1 + 0.1 * u());
    else if (name.endsWith('.bias')) v = Float32Array.from({ length: n }, () => 0.05 * u());
    else if (name.includes('embedding')) v = Float32Array.from({ length: n }, () => 0.05 * u());
    else {
      const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
      const bound = 1 / Math.sqrt(fanIn);
      v = Float32Array.from({ length: n }, () => bound * u());
    }
    out.set(name, v);
  }
  return out;
}

const f16 = (a: Float32Array) => Uint16Array.from(a, f32ToF16Bits);

function tensors(values: Map<string, Float32Array>, shapes: WeightShapes, rename: (n: string) => string, reshape: (n: string, s: number[]) => number[] = (_n, s) => s): TensorToWrite[] {
  return [...shapes].map(([n, s]) => ({ name: rename(n), dtype: 'F16' as const, shape: reshape(n, s), data: f16(values.get(n)!) }));
}

function write(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
}

/** Write the tiny pipeline under `root` (public/ by default). */
export function writeTinyPipeline(root: string): void {
  const us = unetWeightShapes(TINY_UNET);
  const cs = clipWeightShapes(TINY_CLIP);
  const vs = vaeWeightShapes(TINY_VAE);
  const uw = init(us, 1);
  const cw = init(cs, 2);
  const vw = init(vs, 3);
  const meta = { format: 'pt', note: 'LoRASmith tiny demo pipeline: random weights, SD 1.x architecture' };
  const dir = join(root, 'tiny');
  write(join(dir, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'], text_encoder: ['transformers', 'CLIPTextModel'], vae: ['diffusers', 'AutoencoderKL'], tokenizer: ['transformers', 'CLIPTokenizer'], scheduler: ['diffusers', 'DDPMScheduler'] }, null, 2));
  write(join(dir, 'unet/config.json'), JSON.stringify(unetConfigJson(TINY_UNET), null, 2));
  write(join(dir, 'unet/diffusion_pytorch_model.safetensors'), writeSafetensors(tensors(uw, us, (n) => n), meta));
  write(join(dir, 'text_encoder/config.json'), JSON.stringify(clipConfigJson(TINY_CLIP), null, 2));
  write(join(dir, 'text_encoder/model.safetensors'), writeSafetensors(tensors(cw, cs, (n) => n), meta));
  write(join(dir, 'vae/config.json'), JSON.stringify(vaeConfigJson(TINY_VAE), null, 2));
  write(join(dir, 'vae/diffusion_pytorch_model.safetensors'), writeSafetensors(tensors(vw, vs, (n) => n), meta));
  const { vocabJson, mergesTxt } = buildTinyVocab(CORPUS, TINY_CLIP.vocabSize);
  write(join(dir, 'tokenizer/vocab.json'), vocabJson);
  write(join(dir, 'tokenizer/merges.txt'), mergesTxt);
  write(join(dir, 'tokenizer/special_tokens_map.json'), JSON.stringify({ bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: '<|endoftext|>', unk_token: '<|endoftext|>' }, null, 2));
  write(join(dir, 'tokenizer/tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'CLIPTokenizer', model_max_length: 77, do_lower_case: true }, null, 2));
  write(join(dir, 'scheduler/scheduler_config.json'), JSON.stringify({ _class_name: 'DDPMScheduler', num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', prediction_type: 'epsilon' }, null, 2));
  // The same weights in the original single-file layout.
  const single = [
    ...tensors(uw, us, (n) => diffusersToLdmUnet(n, TINY_UNET)),
    ...tensors(cw, cs, (n) => diffusersToLdmClip(n)),
    ...tensors(vw, vs, (n) => diffusersToLdmVae(n, TINY_VAE), (n, s) => (vaeAttentionIsConvInLdm(n) ? [...s, 1, 1] : s)),
  ];
  const configs = JSON.stringify({ unet: unetConfigJson(TINY_UNET), text_encoder: clipConfigJson(TINY_CLIP), vae: vaeConfigJson(TINY_VAE) });
  write(join(root, 'tiny-sd1.safetensors'), writeSafetensors(single, { ...meta, [CONFIG_METADATA_KEY]: configs }));
}

if (process.argv[1] && resolve(process.argv[1]).endsWith('tiny-model.ts')) {
  const root = resolve(process.argv[2] ?? 'public');
  writeTinyPipeline(root);
  console.log(`wrote the tiny pipeline to ${root}/tiny/ (diffusers layout) and ${root}/tiny-sd1.safetensors (single file)`);
}
