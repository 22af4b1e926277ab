// A LoRA trains on a single-file SD 1.x checkpoint whose architecture was read from its shapes (other widths, two transformer blocks).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { testBackend } from '../engine/testing/gpu.js';
import { loadSingleFile } from '../model/pipeline.js';
import { bytesSource, openSafetensors } from '../model/safetensors.js';
import { NON_DEFAULT_SD1, singleFileBytes } from '../model/single-file-fixtures.js';
import { ClipTokenizer } from '../model/tokenizer.js';
import { DEFAULT_CONFIG } from './config.js';
import { ROOT, sampleItems } from './testing.js';
import { Trainer, type StepMetrics } from './trainer.js';

describe('training on a single file of other SD 1.x widths', () => {
  it('loads it and takes one LoRA step with a finite loss', async () => {
    const backend = await testBackend();
    const tok = ClipTokenizer.fromFiles(readFileSync(`${ROOT}/public/tiny/tokenizer/vocab.json`, 'utf8'), readFileSync(`${ROOT}/public/tiny/tokenizer/merges.txt`, 'utf8'));
    const p = await loadSingleFile(backend, bytesSource(singleFileBytes(NON_DEFAULT_SD1, { ema: true }), 'other.safetensors'), tok);
    expect(p.unet.config).toStrictEqual(NON_DEFAULT_SD1.unet);
    const metrics: StepMetrics[] = [];
    let saved: Uint8Array | null = null;
    const t = new Trainer(
      p,
      { ...DEFAULT_CONFIG, resolution: 64, enableBuckets: false, trainTextEncoder: false, gradientCheckpointing: false, networkDropout: 0, flipAug: false, baseSteps: 1, warmup: 0, networkDim: 4, networkAlpha: 4, sampleSteps: 0 },
      sampleItems(1),
      { onMetrics: (m) => metrics.push(m), onCheckpoint: (f) => (saved = f) },
    );
    await t.run();
    expect(metrics).toHaveLength(1);
    expect(Number.isFinite(metrics[0]!.loss)).toBe(true);
    const f = await openSafetensors(bytesSource(saved!));
    // The second block of each transformer is adapted too.
    expect([...f.tensors.keys()].some((k) => k.startsWith('lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn2_to_k.'))).toBe(true);
    const up = await f.readTensor('lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn2_to_k.lora_up.weight');
    expect(up.some((v) => v !== 0)).toBe(true);
    t.dispose();
    p.dispose();
  }, 10 * 60_000);
});
