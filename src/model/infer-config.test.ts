// Configurations read from single-file shapes: SD 1.5 exactly, other SD 1.x-family widths and depths, the variants people download, and clear refusals.
import { describe, expect, it } from 'vitest';
import { SD15_CLIP } from './clip.js';
import { CheckpointMismatchError, CONFIG_METADATA_KEY, inferSingleFileConfigs } from './infer-config.js';
import { NON_DEFAULT_SD1, singleFileShapes, type Sd1Configs } from './single-file-fixtures.js';
import { clipConfigJson, TINY_CLIP, TINY_UNET, TINY_VAE, unetConfigJson, vaeConfigJson } from './tiny.js';
import { SD15_UNET } from './unet.js';
import { SD15_VAE } from './vae.js';

type Shapes = Map<string, { shape: number[] }>;
const asTensors = (m: Map<string, number[]>): Shapes => new Map([...m].map(([k, shape]) => [k, { shape }]));
const sd15: Sd1Configs = { unet: SD15_UNET, clip: SD15_CLIP, vae: SD15_VAE };

const OTHER = NON_DEFAULT_SD1;

const failure = (t: Shapes, md: Record<string, string> = {}): Error => {
  try {
    inferSingleFileConfigs(t, md, 'x.safetensors');
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointMismatchError);
    return e as Error;
  }
  throw new Error('accepted');
};

describe('inferSingleFileConfigs', () => {
  it('reads the real SD 1.5 shapes as exactly SD15_UNET, SD15_CLIP and SD15_VAE, assuming heads, groups and scaling', () => {
    const info = inferSingleFileConfigs(asTensors(singleFileShapes(sd15)), {}, 'sd15.safetensors');
    expect(info.unet).toStrictEqual(SD15_UNET);
    expect(info.clip).toStrictEqual(SD15_CLIP);
    expect(info.vae).toStrictEqual(SD15_VAE);
    expect(info.assumed.map((a) => `${a.part} ${a.field} ${a.value}`)).toEqual(['U-Net heads 8', 'U-Net groups 32', 'text encoder heads 12', 'VAE groups 32', 'VAE scalingFactor 0.18215']);
    expect(info.notes.join(' ')).toMatch(/assumed from SD 1\.x conventions: U-Net heads 8, U-Net groups 32, text encoder heads 12/);
    expect(info).toMatchObject({ emaTensors: 0, clipForm: 'text_model' });
  });

  it('reads other widths, depths and attention levels, and the time-embedding width', () => {
    expect(inferSingleFileConfigs(asTensors(singleFileShapes(OTHER))).unet).toStrictEqual(OTHER.unet);
    const wide = { ...OTHER, unet: { ...OTHER.unet, layersPerBlock: 2, attentionLevels: [true, false, true], timeEmbedDim: 96, transformerDepth: undefined } };
    delete wide.unet.transformerDepth;
    const info = inferSingleFileConfigs(asTensors(singleFileShapes(wide)));
    expect(info.unet).toStrictEqual(wide.unet);
    expect(info.clip).toStrictEqual(OTHER.clip);
    expect(info.vae).toStrictEqual(OTHER.vae);
  });

  it('takes heads, groups and scaling from this project\'s metadata when present (the tiny demo file)', () => {
    const tiny = { unet: TINY_UNET, clip: TINY_CLIP, vae: TINY_VAE };
    const md = { [CONFIG_METADATA_KEY]: JSON.stringify({ unet: unetConfigJson(TINY_UNET), text_encoder: clipConfigJson(TINY_CLIP), vae: vaeConfigJson(TINY_VAE) }) };
    const info = inferSingleFileConfigs(asTensors(singleFileShapes(tiny)), md);
    expect(info).toMatchObject({ unet: TINY_UNET, clip: TINY_CLIP, vae: TINY_VAE, assumed: [] });
    // Without it, a 32-wide text encoder has no conventional head count, and the error says so.
    expect(failure(asTensors(singleFileShapes(tiny))).message).toMatch(/^x\.safetensors: cannot load its text encoder: it is 32 wide, not a multiple of CLIP's 64-channel heads/);
  });

  it('accepts legacy text-encoder names, missing position ids and EMA weights, and says so', () => {
    const legacy = asTensors(singleFileShapes(OTHER, 'legacy'));
    legacy.set('model_ema.decay', { shape: [] });
    legacy.set('model_ema.num_updates', { shape: [] });
    legacy.set('model_ema.diffusion_modelinput_blocks00weight', { shape: [32, 4, 3, 3] });
    legacy.set('model_ema.diffusion_modelout2weight', { shape: [4, 32, 3, 3] });
    const info = inferSingleFileConfigs(legacy);
    expect(info).toMatchObject({ clip: OTHER.clip, clipForm: 'legacy', emaTensors: 2 });
    expect(info.notes.join(' ')).toMatch(/EMA weights \(2 tensors under model_ema\.\); training uses the main weights/);
    expect(info.notes.join(' ')).toMatch(/older key names/);
  });

  it('summarises the storage dtypes', () => {
    const t = new Map([...singleFileShapes(OTHER)].map(([k, shape]) => [k, { shape, dtype: k.includes('first_stage') ? 'F32' : 'F16' }]));
    expect(inferSingleFileConfigs(t).dtype).toBe('F16+F32');
  });

  it('refuses what it cannot run, naming the part and the reason', () => {
    const base = asTensors(singleFileShapes(OTHER));
    const edit = (f: (m: Shapes) => void) => {
      const m = new Map(base);
      f(m);
      return m;
    };
    expect(failure(edit((m) => m.delete('model.diffusion_model.out.2.weight'))).message).toBe('x.safetensors: cannot load its U-Net: it lacks model.diffusion_model.out.2.weight');
    expect(failure(edit((m) => m.set('model.diffusion_model.middle_block.1.proj_in.weight', { shape: [64, 64] }))).message).toMatch(/with a Linear \(as SD 2\.x does\)/);
    expect(failure(edit((m) => m.set('model.diffusion_model.input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight', { shape: [64, 48] }))).message).toMatch(/cross-attends to contexts of (64 and 48|48 and 64) channels/);
    const narrowText = edit((m) => {
      for (const [k, v] of m) if (k.startsWith('cond_stage_model.') && k.endsWith('token_embedding.weight')) m.set(k, { shape: [v.shape[0]!, 128] });
    });
    expect(failure(narrowText).message).toMatch(/cross-attends to a 64-channel context but the text encoder is 128 wide/);
    const transformerless = edit((m) => {
      for (const k of m.keys()) if (k.startsWith('model.diffusion_model.input_blocks.5.1.')) m.delete(k);
    });
    expect(failure(transformerless).message).toBe('x.safetensors: cannot load its U-Net: it has attention in output block 0 but none at down level 2');
  });
});
