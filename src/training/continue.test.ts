// Continuing a LoRA file of another rank: the re-saved file keeps the file's rank and alpha, and its metadata says so.
import { describe, expect, it } from 'vitest';
import { testBackend } from '../engine/testing/gpu.js';
import { readLoraFile } from '../model/lora-file.js';
import { bytesSource, openSafetensors } from '../model/safetensors.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';
import { sampleItems, tinyPipeline } from './testing.js';
import { loraSpecs, Trainer } from './trainer.js';

describe('continuing a LoRA of another rank', () => {
  it('re-saves at the file’s rank and alpha, and ss_network_dim / ss_network_alpha are the file’s, not the settings’', async () => {
    const pipeline = await tinyPipeline(await testBackend());
    const base: TrainConfig = { ...DEFAULT_CONFIG, resolution: 64, enableBuckets: false, trainTextEncoder: false };
    const items = sampleItems(1);
    const first = new Trainer(pipeline, { ...base, networkDim: 8, networkAlpha: 2 }, items);
    const file = await first.exportLora();
    first.dispose();
    const settings = { ...base, networkDim: 4, networkAlpha: 4 };
    const read = await readLoraFile(file, loraSpecs(pipeline, settings));
    const again = new Trainer(pipeline, settings, items, {}, read.weights);
    const f = await openSafetensors(bytesSource(await again.exportLora()));
    again.dispose();
    expect(f.tensors.get('lora_unet_mid_block_attentions_0_proj_in.lora_down.weight')?.shape[0]).toBe(8);
    expect(f.metadata.ss_network_dim).toBe('8');
    expect(f.metadata.ss_network_alpha).toBe('2');
  }, 10 * 60_000);
});
