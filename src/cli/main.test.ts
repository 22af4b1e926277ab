// The command-line trainer as a user runs it: a separate process on Dawn, real files in and out.
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode as decodePng } from 'fast-png';
import { describe, expect, it } from 'vitest';
import { bytesSource, openSafetensors } from '../model/safetensors.js';
import { cli, cliUntil, ROOT } from './testing.js';

describe('lorasmith', () => {
  it('inspect lists a checkpoint’s tensors', async () => {
    const r = await cli(['inspect', join(ROOT, 'public/tiny-sd1.safetensors')]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/tensors/);
    expect(r.out).toContain('model.diffusion_model.input_blocks.0.0.weight');
  }, 120_000);

  it('refuses bad settings and empty folders with the reason', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    const bad = await cli(['train', '--model', 'tiny', '--images', join(ROOT, 'public/samples'), '--out', join(dir, 'x.safetensors'), '--batch', '0']);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/batchSize: Batch size must be/);
    const empty = await cli(['train', '--model', 'tiny', '--images', dir, '--out', join(dir, 'x.safetensors')]);
    expect(empty.code).toBe(1);
    expect(empty.out).toContain('no usable images');
    const every = await cli(['train', '--model', 'tiny', '--images', join(ROOT, 'public/samples'), '--out', join(dir, 'x.safetensors'), '--validate-every', '5']);
    expect(every.code).toBe(1);
    expect(every.out).toContain('--validate-every needs a validation set: add --validation-split X');
    const split = await cli(['train', '--model', 'tiny', '--images', join(ROOT, 'public/samples'), '--out', join(dir, 'x.safetensors'), '--validation-split', '0.9']);
    expect(split.code).toBe(1);
    expect(split.out).toMatch(/validationSplit: Validation split must be between 0 and 0.5 \(got 0.9\)/);
  }, 120_000);

  it('trains the tiny model (with LoCon) for two steps, saving the LoRA and preview images, with a held-out validation loss', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    const out = join(dir, 'cli-lora.safetensors');
    const r = await cli(['train', '--model', 'tiny', '--images', join(ROOT, 'public/samples'), '--out', out, '--steps', '2', '--no-te', '--conv-dim', '2', '--optimizer', 'lion', '--lr', '1e-4', '--samples', join(dir, 'samples'), '--sample-every', '1', '--sample-steps', '1', '--save-state', '--validation-split', '0.2', '--validate-every', '1']);
    expect(r.out).toContain('step 2/2');
    expect(r.code).toBe(0);
    // Validation: a fifth of the photos held out (the run trains on the rest), a loss after step 1 and at the end, the best kept beside the last.
    const losses = [...r.out.matchAll(/validation loss ([\d.]+) at step (\d) on (\d+) images/g)];
    expect(losses.map((m) => m[2])).toEqual(['1', '2']);
    const best = losses.reduce((a, m) => (Number(m[1]) < Number(a[1]) ? m : a));
    expect(r.out).toContain(`saved ${join(dir, 'cli-lora-best.safetensors')} (the best validation loss so far, step ${best[2]})`);
    const bestMeta = (await openSafetensors(bytesSource(new Uint8Array(readFileSync(join(dir, 'cli-lora-best.safetensors')))))).metadata;
    expect(bestMeta.ss_steps).toBe(best[2]);
    expect(bestMeta.lorasmith_validation_best_step).toBe(best[2]);
    expect(existsSync(out)).toBe(true);
    const bytes = readFileSync(out);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
    expect(header.__metadata__.ss_optimizer).toMatch(/Lion/i);
    // LoCon (issue 10 item 9; this run exited with a conv2d error before): a 3x3 conv at the conv rank, the 1x1 shortcut at the network rank.
    expect(header['lora_unet_down_blocks_1_resnets_0_conv1.lora_down.weight'].shape).toEqual([2, 32, 3, 3]);
    expect(header['lora_unet_down_blocks_1_resnets_0_conv_shortcut.lora_down.weight'].shape).toEqual([16, 32, 1, 1]);
    expect(header['lora_unet_down_blocks_1_resnets_0_conv_shortcut.lora_up.weight'].shape).toEqual([64, 16, 1, 1]);
    const lora = await openSafetensors(bytesSource(new Uint8Array(bytes)));
    expect(await lora.readTensor('lora_unet_down_blocks_1_resnets_0_conv1.alpha')).toEqual(Float32Array.of(2)); // conv alpha = conv dim
    expect(await lora.readTensor('lora_unet_down_blocks_1_resnets_0_conv_shortcut.alpha')).toEqual(Float32Array.of(16)); // the network's alpha
    expect(header['lora_unet_down_blocks_0_downsamplers_0_conv.lora_down.weight'].shape).toEqual([2, 32, 3, 3]);
    // lora_up starts at zero: non-zero values mean the conv modules received gradient and were updated.
    for (const k of ['down_blocks_1_resnets_0_conv1', 'down_blocks_1_resnets_0_conv_shortcut', 'up_blocks_0_resnets_0_conv_shortcut', 'down_blocks_0_downsamplers_0_conv'])
      expect((await lora.readTensor(`lora_unet_${k}.lora_up.weight`)).some((x) => x !== 0), k).toBe(true);
    const pngs = readdirSync(join(dir, 'samples')).sort();
    expect(pngs).toEqual(['cli-lora-000001.png', 'cli-lora-000002.png']);
    const img = decodePng(readFileSync(join(dir, 'samples', pngs[1]!)));
    expect([img.width, img.height]).toEqual([64, 64]);

    // Resume from that file: the weights load back into the same targets and training goes on.
    const out2 = join(dir, 'cli-lora-more.safetensors');
    const modules = Object.keys(header).filter((k) => k.endsWith('.alpha')).length;
    const again = await cliUntil(['train', '--model', 'tiny', '--images', join(ROOT, 'public/samples'), '--out', out2, '--steps', '1', '--no-te', '--conv-dim', '2', '--resume', out, '--sample-steps', '0'], /resuming from .*\(\d+ modules\)|error:/);
    expect(again).toContain(`(${modules} modules)`);
    // Settings of another rank: the file's rank and alpha are kept, and said; the run length in epochs (batch 1: one step an image).
    const other = await cliUntil(['train', '--model', 'tiny', '--images', join(ROOT, 'public/samples'), '--out', out2, '--epochs', '1', '--no-te', '--conv-dim', '2', '--resume', out, '--dim', '4'], /effective batch|error:/);
    expect(other).toMatch(/modules have rank 16, alpha 16 \(scale 1\); the settings' network dim and alpha give rank 4, alpha 16 \(scale 4\)\. Training continues with the file's rank and alpha\./);
    expect(other).toMatch(/\b(\d+) images, \1 steps, 1 epoch \(effective batch 1\)/);

    // --save-state kept the run state beside the LoRA (Lion's moment included); --resume-state refuses other settings by name, and a LoRA file.
    const state = await openSafetensors(bytesSource(new Uint8Array(readFileSync(join(dir, 'cli-lora-state', 'run-state.safetensors')))));
    expect(JSON.parse(state.metadata.lorasmith_run_state!).step).toBe(2);
    expect(state.tensors.has('arena.unet.lion_m')).toBe(true);
    const changed = await cli(['train', '--model', 'tiny', '--images', join(ROOT, 'public/samples'), '--out', out2, '--resume-state', join(dir, 'cli-lora-state'), '--lr', '2e-4']);
    expect(changed.out).toMatch(/cannot continue exactly: setting unetLr: 0\.0001 → 0\.0002\. /);
    const notState = await cli(['train', '--model', 'tiny', '--images', join(ROOT, 'public/samples'), '--out', out2, '--resume-state', out]);
    expect(notState.out).toMatch(/a LoRA file, not a run state\. Continue it with --resume /);
  }, 30 * 60_000);
});
