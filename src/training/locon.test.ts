// A LoCon run end to end on the tiny pipeline, which has conv_shortcut layers (channels 32 -> 64): train, export, check the file.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testBackend } from '../engine/testing/gpu.js';
import { bytesSource, openSafetensors } from '../model/safetensors.js';
import { validateConfig } from './config.js';
import { ROOT, sampleItems, tinyPipeline } from './testing.js';
import { Trainer } from './trainer.js';

const checker = join(ROOT, '../shared/tools/check_lora.py');

describe('LoCon (conv dim > 0) on the tiny pipeline', () => {
  it('trains two steps and exports conv modules with kohya shapes, conv alpha = conv dim, and trained weights', async () => {
    const backend = await testBackend();
    const pipeline = await tinyPipeline(backend);
    // Network rank 4 at alpha 1; conv rank 2 with conv alpha left to its default (the conv dim).
    const v = validateConfig({ resolution: 64, enableBuckets: false, trainTextEncoder: false, gradientCheckpointing: false, networkDropout: 0, flipAug: false, unetLr: 1e-2, baseSteps: 2, warmup: 0, sampleSteps: 0, networkDim: 4, networkAlpha: 1, convDim: 2 });
    if (!v.ok) throw new Error(JSON.stringify(v.errors));
    expect(v.config.convAlpha).toBe(2);
    const t = new Trainer(pipeline, v.config, sampleItems(1));
    await t.cacheLatents();
    await t.run();
    expect(t.step).toBe(2);
    const file = await t.exportLora();
    t.dispose();
    const f = await openSafetensors(bytesSource(file));
    const shape = (k: string) => f.tensors.get(`lora_unet_${k}`)?.shape;
    const value = async (k: string) => f.readTensor(`lora_unet_${k}`);
    // 3x3 conv: kernel-sized down and 1x1 up at the conv rank, alpha = conv dim.
    expect(shape('down_blocks_1_resnets_0_conv1.lora_down.weight')).toEqual([2, 32, 3, 3]);
    expect(shape('down_blocks_1_resnets_0_conv1.lora_up.weight')).toEqual([64, 2, 1, 1]);
    expect(await value('down_blocks_1_resnets_0_conv1.alpha')).toEqual(Float32Array.of(2));
    // 1x1 conv_shortcut: [r, in, 1, 1] / [out, r, 1, 1] at the network rank and alpha.
    expect(shape('down_blocks_1_resnets_0_conv_shortcut.lora_down.weight')).toEqual([4, 32, 1, 1]);
    expect(shape('down_blocks_1_resnets_0_conv_shortcut.lora_up.weight')).toEqual([64, 4, 1, 1]);
    expect(await value('down_blocks_1_resnets_0_conv_shortcut.alpha')).toEqual(Float32Array.of(1));
    expect(shape('down_blocks_1_resnets_0_time_emb_proj.lora_down.weight')).toEqual([4, 128]);
    expect(shape('down_blocks_0_downsamplers_0_conv.lora_down.weight')).toEqual([2, 32, 3, 3]);
    // lora_up starts at zero: non-zero values mean the conv modules received gradient and were updated.
    for (const k of ['down_blocks_1_resnets_0_conv1', 'down_blocks_1_resnets_0_conv_shortcut', 'up_blocks_0_resnets_0_conv_shortcut', 'down_blocks_0_downsamplers_0_conv'])
      expect((await value(`${k}.lora_up.weight`)).some((x) => x !== 0), k).toBe(true);
    if (existsSync(checker)) {
      const dir = mkdtempSync(join(tmpdir(), 'locon-'));
      writeFileSync(join(dir, 'locon.safetensors'), file);
      expect(execFileSync('/usr/bin/python3', [checker, join(dir, 'locon.safetensors')], { encoding: 'utf8' })).toMatch(/^ok: \d+ modules/);
    } else console.warn(`locon.test.ts: SKIPPED the A1111/ComfyUI reader check: ${checker} (../shared beside the checkout) is absent`);
  }, 10 * 60_000);
});
