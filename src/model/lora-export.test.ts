// The exported SD 1.5 LoRA key set against the list the reference describes, checked by shared/tools/check_lora.py.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SD15_CLIP } from './clip.js';
import { writeLoraFile } from './lora-file.js';
import { kohyaShapes, loraTargets } from './lora.js';
import { bytesSource, openSafetensors } from './safetensors.js';
import { SD15_UNET } from './unet.js';

const checker = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../shared/tools/check_lora.py');

/** Written from ../shared/reference/lora-format.md, not from our code: 16 transformer blocks x 12 layers, 12 CLIP layers x 6. */
function expectedModules(): string[] {
  const blocks = [
    ...[0, 1, 2].flatMap((i) => [0, 1].map((j) => `down_blocks_${i}_attentions_${j}`)),
    'mid_block_attentions_0',
    ...[1, 2, 3].flatMap((i) => [0, 1, 2].map((j) => `up_blocks_${i}_attentions_${j}`)),
  ];
  const inner = ['proj_in', 'proj_out', ...['attn1', 'attn2'].flatMap((a) => ['to_q', 'to_k', 'to_v', 'to_out_0'].map((p) => `transformer_blocks_0_${a}_${p}`)), 'transformer_blocks_0_ff_net_0_proj', 'transformer_blocks_0_ff_net_2'];
  const te = Array.from({ length: 12 }, (_, l) => ['self_attn_q_proj', 'self_attn_k_proj', 'self_attn_v_proj', 'self_attn_out_proj', 'mlp_fc1', 'mlp_fc2'].map((p) => `lora_te_text_model_encoder_layers_${l}_${p}`)).flat();
  return [...blocks.flatMap((b) => inner.map((i) => `lora_unet_${b}_${i}`)), ...te];
}

describe('kohya export of an SD 1.5 LoRA', () => {
  it('has exactly the reference key set, shapes, alpha and metadata', async () => {
    const specs = loraTargets(SD15_UNET, SD15_CLIP, { rank: 8, alpha: 4 });
    expect(specs.length).toBe(264);
    const modules = specs.map((spec) => {
      const s = kohyaShapes(spec);
      return { spec, down: new Float32Array(s.down.reduce((a, b) => a * b, 1)).fill(0.01), up: new Float32Array(s.up.reduce((a, b) => a * b, 1)) };
    });
    const meta = { ss_network_module: 'networks.lora', ss_network_dim: '8', ss_network_alpha: '4', ss_learning_rate: '0.0001', ss_lr_scheduler: 'cosine', ss_max_train_steps: '10', ss_gradient_accumulation_steps: '1', ss_batch_size_per_device: '1', ss_base_model_version: 'sd_v1', ss_seed: '0', ss_resolution: '(512, 512)', 'modelspec.architecture': 'stable-diffusion-v1/lora' };
    const file = await writeLoraFile(modules, meta, 'fp16');
    const f = await openSafetensors(bytesSource(file));
    const names = new Set([...f.tensors.keys()].map((k) => k.replace(/\.(lora_down\.weight|lora_up\.weight|alpha)$/, '')));
    expect([...names].sort()).toEqual(expectedModules().sort());
    expect(f.tensors.get('lora_unet_mid_block_attentions_0_proj_in.lora_down.weight')!.shape).toEqual([8, 1280, 1, 1]);
    expect(f.tensors.get('lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_0_proj.lora_up.weight')!.shape).toEqual([2560, 8]);
    expect(f.tensors.get('lora_te_text_model_encoder_layers_11_mlp_fc2.lora_down.weight')!.shape).toEqual([8, 3072]);
    expect(f.tensors.get('lora_te_text_model_encoder_layers_11_mlp_fc2.alpha')).toMatchObject({ dtype: 'F16', shape: [] });
    expect(await f.readTensor('lora_te_text_model_encoder_layers_0_mlp_fc1.alpha')).toEqual(Float32Array.of(4));
    expect(f.metadata.sshs_model_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(f.metadata.sshs_legacy_hash).toMatch(/^[0-9a-f]{8}$/);
    if (existsSync(checker)) {
      const dir = mkdtempSync(join(tmpdir(), 'lora-'));
      writeFileSync(join(dir, 'sd15.safetensors'), file);
      writeFileSync(join(dir, 'expected.json'), JSON.stringify(expectedModules()));
      const out = execFileSync('/usr/bin/python3', [checker, join(dir, 'sd15.safetensors'), join(dir, 'expected.json')], { encoding: 'utf8' });
      expect(out).toMatch(/^ok: 264 modules \(192 unet, 72 te\)/);
    }
  });
});

describe('reading a LoRA back to resume', () => {
  it('round-trips fp32 weights and refuses a file of another rank', async () => {
    const { readLoraFile } = await import('./lora-file.js');
    const { TINY_UNET } = await import('./tiny.js');
    const specs = loraTargets(TINY_UNET, null, { rank: 4, alpha: 4 });
    const modules = specs.map((spec, i) => {
      const s = kohyaShapes(spec);
      return { spec, down: Float32Array.from({ length: s.down.reduce((a, b) => a * b, 1) }, (_, j) => Math.sin(i + j)), up: Float32Array.from({ length: s.up.reduce((a, b) => a * b, 1) }, (_, j) => Math.cos(i * j)) };
    });
    const file = await writeLoraFile(modules, { ss_network_module: 'networks.lora' }, 'fp32');
    const back = await readLoraFile(file, specs);
    expect(back.size).toBe(specs.length);
    const m0 = back.get('lora_unet_down_blocks_0_attentions_0_proj_in')!;
    expect(m0.down).toEqual(modules[0]!.down);
    const other = loraTargets(TINY_UNET, null, { rank: 8, alpha: 8 });
    await expect(readLoraFile(file, other, 'old.safetensors')).rejects.toThrow(/old\.safetensors: .*different rank/);
  });
});
