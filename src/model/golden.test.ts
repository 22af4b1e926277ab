// The models on Dawn against an independent PyTorch float64 implementation (scripts/golden.py) on the tiny pipeline.
import { resolve } from 'node:path';
import { beforeAll, describe, it } from 'vitest';
import { noGrad } from '../engine/autograd.js';
import { scope, tensor } from '../engine/tensor.js';
import { testBackend } from '../engine/testing/gpu.js';
import { assertClose, maxRelError } from '../engine/testing/allclose.js';
import { clipForward } from './clip.js';
import { Layers } from './layers.js';
import { fileSource } from './node-source.js';
import { folderRepo } from './node-repo.js';
import { loadDiffusers, loadSingleFile, type Pipeline } from './pipeline.js';
import { openSafetensors } from './safetensors.js';
import { unetForward } from './unet.js';
import { vaeDecode, vaeEncode } from './vae.js';

const root = resolve(__dirname, '../..');
const golden = async (name: string) => {
  const f = await openSafetensors(await fileSource(`${root}/src/model/golden/${name}.safetensors`));
  const out: Record<string, { data: Float32Array; shape: number[] }> = {};
  for (const [k, t] of f.tensors) out[k] = { data: await f.readTensor(k), shape: t.shape };
  await f.source.close?.();
  return out;
};

// Weights are f16 in the files and on the GPU (exact); compute is f32 against float64.
const TOL = { atol: 2e-4, rtol: 2e-3 };

async function runAll(p: Pipeline) {
  const b = await testBackend();
  const u = await golden('unet');
  const c = await golden('clip');
  const v = await golden('vae');
  const read = async (fn: () => import('../engine/tensor.js').Tensor) => {
    const t = noGrad(() => scope(fn));
    const d = await t.read();
    t.dispose();
    return d;
  };
  const unetOut = await read(() =>
    unetForward(new Layers(p.unet.weights), p.unet.config, tensor(b, u.sample!.data, u.sample!.shape), Array.from(u.timesteps!.data), tensor(b, u.context!.data, u.context!.shape)),
  );
  assertClose(unetOut, u.out!.data, TOL, `U-Net output (max rel err ${maxRelError(unetOut, u.out!.data).toExponential(2)})`);
  for (const skip of [1, 2]) {
    const h = await read(() => clipForward(new Layers(p.clip.weights), p.clip.config, Array.from(c.ids!.data), 2, skip));
    assertClose(h, c[`hidden_skip${skip}`]!.data, TOL, `text encoder, clip skip ${skip}`);
  }
  const vl = new Layers(p.vae.weights);
  const img = () => tensor(b, v.image!.data, v.image!.shape);
  assertClose(await read(() => vaeEncode(vl, p.vae.config, img()).mean), v.mean!.data, TOL, 'VAE encoder mean');
  assertClose(await read(() => vaeEncode(vl, p.vae.config, img()).logvar), v.logvar!.data, TOL, 'VAE encoder log-variance');
  assertClose(await read(() => vaeDecode(vl, p.vae.config, tensor(b, v.latent!.data, v.latent!.shape))), v.decoded!.data, TOL, 'VAE decoder');
}

describe('tiny pipeline vs PyTorch goldens', () => {
  let tokenizerPipeline: Pipeline;
  beforeAll(async () => {
    tokenizerPipeline = await loadDiffusers(await testBackend(), folderRepo(`${root}/public/tiny`));
  }, 10 * 60_000);

  it('diffusers layout: U-Net, text encoder (clip skip 1 and 2), VAE encoder and decoder', async () => {
    await runAll(tokenizerPipeline);
  }, 15 * 60_000);

  it('single-file (LDM) layout loads the same weights and matches too', async () => {
    const p = await loadSingleFile(await testBackend(), await fileSource(`${root}/public/tiny-sd1.safetensors`), tokenizerPipeline.tokenizer);
    await runAll(p);
    p.dispose();
  }, 15 * 60_000);
});
