// Loading what people download as single files: other SD 1.x widths, fp32/fp16/bf16, EMA, legacy names, no position ids; pickles refused; failed loads close their files.
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { MetaBackend, type GpuBackend } from '../engine/backend.js';
import { roundF16 } from '../engine/dtype.js';
import { testBackend } from '../engine/testing/gpu.js';
import { CheckpointMismatchError } from './infer-config.js';
import { folderRepo } from './node-repo.js';
import { loadDiffusers, loadSingleFile, type RepoFiles } from './pipeline.js';
import { bytesSource, openSafetensors, SafetensorsError, writeSafetensors, type ByteSource } from './safetensors.js';
import { NON_DEFAULT_SD1, singleFileBytes, type FixtureOptions } from './single-file-fixtures.js';
import { ClipTokenizer } from './tokenizer.js';

const root = resolve(__dirname, '../..');
const tokenizer = ClipTokenizer.fromFiles(readFileSync(`${root}/public/tiny/tokenizer/vocab.json`, 'utf8'), readFileSync(`${root}/public/tiny/tokenizer/merges.txt`, 'utf8'));

/** A byte source that counts how often it is closed. */
function tracked(bytes: Uint8Array, name: string): ByteSource & { closes: number } {
  const src = { ...bytesSource(bytes, name), closes: 0, close: async () => void src.closes++ };
  return src;
}

/** What a weight holds in the file, as f32 (decoded by the reader, independent of the upload path). */
async function fileValues(bytes: Uint8Array, key: string): Promise<Float32Array> {
  return (await openSafetensors(bytesSource(bytes))).readTensor(key);
}

const U = 'model.diffusion_model.';
/** One weight per part, the U-Net's in the second transformer block (depth 2) of the first attention level. */
const probes = [
  { part: 'unet', name: 'down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k.weight', key: `${U}input_blocks.3.1.transformer_blocks.1.attn2.to_k.weight` },
  { part: 'clip', name: 'text_model.encoder.layers.1.mlp.fc1.weight', key: 'cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc1.weight' },
  { part: 'vae', name: 'encoder.mid_block.attentions.0.to_q.weight', key: 'first_stage_model.encoder.mid.attn_1.q.weight' },
] as const;

let backend: GpuBackend;
beforeAll(async () => {
  backend = await testBackend();
});

async function load(o: FixtureOptions, weightDtype?: 'f16' | 'f32') {
  const bytes = singleFileBytes(NON_DEFAULT_SD1, o);
  const src = tracked(bytes, 'other.safetensors');
  const p = await loadSingleFile(backend, src, tokenizer, { weightDtype });
  expect(src.closes).toBe(1);
  return { p, bytes };
}

describe('loadSingleFile reads the architecture from the weights', () => {
  it('loads an SD 1.x file of other widths and depths (f16, kept bit for bit on the GPU), and says what it assumed', async () => {
    const { p, bytes } = await load({ dtype: 'F16' });
    expect(p.unet.config).toStrictEqual(NON_DEFAULT_SD1.unet);
    expect(p.clip.config).toStrictEqual(NON_DEFAULT_SD1.clip);
    expect(p.vae.config).toStrictEqual(NON_DEFAULT_SD1.vae);
    expect(p.info!.assumed.map((a) => `${a.part} ${a.field}`)).toEqual(['U-Net heads', 'U-Net groups', 'text encoder heads', 'VAE groups', 'VAE scalingFactor']);
    expect(p.info!.dtype).toBe('F16');
    for (const q of probes) {
      const t = p[q.part].weights.get(q.name);
      expect(t.dtype).toBe('f16');
      expect(await t.read()).toEqual(await fileValues(bytes, q.key));
    }
    p.dispose();
  });

  it('keeps f32 storage when asked (weightDtype f32), from an f16 file', async () => {
    const { p, bytes } = await load({ dtype: 'F16' }, 'f32');
    const t = p.unet.weights.get(probes[0].name);
    expect(t.dtype).toBe('f32');
    expect(await t.read()).toEqual(await fileValues(bytes, probes[0].key));
    p.dispose();
  });

  for (const dtype of ['F32', 'BF16'] as const) {
    it(`converts a ${dtype} file once to f16 storage`, async () => {
      const { p, bytes } = await load({ dtype });
      expect(p.info!.dtype).toBe(dtype);
      for (const q of probes) expect(await p[q.part].weights.get(q.name).read()).toEqual(roundF16(await fileValues(bytes, q.key)));
      p.dispose();
    });
  }

  it('loads a file with EMA weights (training uses the main ones), legacy text-encoder names and no position ids', async () => {
    const { p, bytes } = await load({ ema: true, clipForm: 'legacy', positionIds: false });
    expect(p.info).toMatchObject({ clipForm: 'legacy', emaTensors: expect.any(Number) });
    expect(p.info!.emaTensors).toBeGreaterThan(100);
    expect(p.info!.notes.join(' ')).toMatch(/EMA weights .* training uses the main weights/);
    expect(await p.unet.weights.get(probes[0].name).read()).toEqual(await fileValues(bytes, probes[0].key)); // not the EMA copy (half of it)
    expect(await p.clip.weights.get(probes[1].name).read()).toEqual(await fileValues(bytes, probes[1].key.replace('text_model.', '')));
    p.dispose();
  });
});

describe('loads that fail', () => {
  const advice = /Convert it once to \.safetensors and load that: with Python, `pip install torch safetensors`, then python -c "import torch, safetensors\.torch as st;/;
  it('a .ckpt (zip or pickle) is refused with how to convert it, and its source is closed', async () => {
    const zip = new Uint8Array(4096);
    zip.set([0x50, 0x4b, 0x03, 0x04, 0x14, 0, 0, 0]);
    const pickle = new Uint8Array(4096);
    pickle.set([0x80, 0x02, 0x7d, 0x71, 0x00]);
    for (const [bytes, name, kind] of [[zip, 'model.ckpt', 'a zip archive'], [pickle, 'old.safetensors', 'a pickle stream'], [new Uint8Array(64).fill(7), 'weights.pth', 'a .pth file']] as const) {
      const src = tracked(bytes, name);
      const e = (await loadSingleFile(backend, src, tokenizer).then(() => null, (x: unknown) => x)) as SafetensorsError;
      expect(e).toBeInstanceOf(SafetensorsError);
      expect(e.code).toBe('pickle');
      expect(e.message).toMatch(new RegExp(`^${name.replace('.', '\\.')}: this is a PyTorch pickle checkpoint \\(${kind.replace('.', '\\.')}`));
      expect(e.message).toMatch(advice);
      expect(src.closes).toBe(1);
    }
    // A safetensors file that was merely named .ckpt is read as what it is.
    expect((await openSafetensors(bytesSource(singleFileBytes(NON_DEFAULT_SD1), 'renamed.ckpt'))).tensors.size).toBeGreaterThan(0);
  });

  it('a file missing a weight is refused by name, its source closed and what was uploaded freed', async () => {
    const all = singleFileBytes(NON_DEFAULT_SD1);
    const f = await openSafetensors(bytesSource(all));
    const keep = [...f.tensors].filter(([k]) => k !== 'first_stage_model.decoder.conv_out.bias');
    const cut = writeSafetensors(await Promise.all(keep.map(async ([name, t]) => ({ name, dtype: t.dtype as 'F16' | 'F32', shape: t.shape, data: t.dtype === 'F32' ? await f.readTensor(name) : new Uint16Array((await f.readRaw(name)).slice().buffer) }))));
    const before = backend.pool().liveBytes;
    const src = tracked(cut, 'pruned-too-far.safetensors');
    const e = (await loadSingleFile(backend, src, tokenizer).then(() => null, (x: unknown) => x)) as Error;
    expect(e).toBeInstanceOf(CheckpointMismatchError);
    expect(e.message).toMatch(/^pruned-too-far\.safetensors lacks VAE weight first_stage_model\.decoder\.conv_out\.bias/);
    expect(src.closes).toBe(1);
    expect(backend.pool().liveBytes).toBe(before);
  });

  it('a diffusers folder whose VAE is broken closes the U-Net and text-encoder files it opened', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'broken-repo-'));
    cpSync(`${root}/public/tiny`, dir, { recursive: true });
    writeFileSync(join(dir, 'vae/diffusion_pytorch_model.safetensors'), new Uint8Array(16));
    const base = folderRepo(dir);
    let open = 0;
    const files: RepoFiles = {
      ...base,
      open: async (path) => {
        const s = await base.open(path);
        open++;
        return { ...s, close: async () => (open--, s.close?.()) };
      },
    };
    await expect(loadDiffusers(new MetaBackend(), files)).rejects.toThrow(/vae\/diffusion_pytorch_model\.safetensors: /);
    expect(open).toBe(0);
  });
});
