// Per-part load progress from the model layer's running byte count and stage names.
import { describe, expect, it } from 'vitest';
import { LoadTracker, partOfKey } from './load-progress.js';

const parts = (t: LoadTracker, stage: string, loaded: number, total: number) => t.update({ stage, loadedBytes: loaded, totalBytes: total }).components!;

describe('LoadTracker', () => {
  it('splits one running count into U-Net, text encoder and VAE bytes, exact once each part is done', () => {
    const t = new LoadTracker();
    t.opened('unet/config.json', 900);
    t.opened('unet/diffusion_pytorch_model.safetensors', 610);
    t.opened('text_encoder/model.safetensors', 210);
    let c = parts(t, 'U-Net', 300, 900);
    expect(c[0]).toMatchObject({ name: 'U-Net', loadedBytes: 300, totalBytes: 610, done: false });
    expect(c[1]).toMatchObject({ name: 'text encoder', loadedBytes: 0, totalBytes: 210, done: false });
    c = parts(t, 'U-Net', 600, 900);
    c = parts(t, 'text encoder', 700, 900);
    expect(c[0]).toMatchObject({ loadedBytes: 600, totalBytes: 600, done: true });
    expect(c[1]).toMatchObject({ loadedBytes: 100, totalBytes: 210, done: false });
    c = parts(t, 'text encoder', 800, 900); // reports come after each tensor: the part's last one is its end
    c = parts(t, 'VAE', 850, 900);
    expect(c[1]).toMatchObject({ loadedBytes: 200, totalBytes: 200, done: true });
    expect(c[2]).toMatchObject({ name: 'VAE', loadedBytes: 50, totalBytes: 100, done: false });
    c = parts(t, 'VAE', 900, 900);
    expect(c.every((x) => x.done)).toBe(true);
    expect(c.map((x) => x.loadedBytes)).toEqual([600, 200, 100]);
    expect(t.finished()).toEqual(c);
  });

  it('reads hub download stages by folder', () => {
    const t = new LoadTracker();
    const c = parts(t, 'text_encoder/model.fp16.safetensors (1.0 MiB of 4.0 MiB downloaded)', 2 ** 20, 4 * 2 ** 20);
    expect(c[1]).toMatchObject({ name: 'text encoder', downloaded: { loadedBytes: 2 ** 20, totalBytes: 4 * 2 ** 20 }, totalBytes: 4 * 2 ** 20 });
    expect(parts(t, 'tokenizer/vocab.json (0.1 MiB downloaded)', 1, 0)[0]).toMatchObject({ loadedBytes: 0, totalBytes: 0 });
  });

  it('classifies single-file keys; EMA copies belong to no part', () => {
    expect(partOfKey('model.diffusion_model.input_blocks.0.0.weight')).toBe('U-Net');
    expect(partOfKey('cond_stage_model.transformer.text_model.embeddings.token_embedding.weight')).toBe('text encoder');
    expect(partOfKey('first_stage_model.decoder.conv_in.weight')).toBe('VAE');
    expect(partOfKey('model_ema.diffusion_modelinput_blocks00weight')).toBeNull();
  });
});
