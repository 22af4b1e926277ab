// The exported SD 1.5 LoRA key set against the list the reference describes, checked by shared/tools/check_lora.py.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SD15_CLIP } from './clip.js';
import { writeLoraFile } from './lora-file.js';
import { kohyaShapes, loraTargets, type LoraModuleSpec } from './lora.js';
import { bytesSource, openSafetensors } from './safetensors.js';
import { SD15_UNET } from './unet.js';

const checker = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../shared/tools/check_lora.py');
const haveChecker = existsSync(checker);
const SKIP_CHECKER = `SKIPPED: the A1111/ComfyUI reader check needs ${checker} (../shared beside the checkout), which is absent`;
if (!haveChecker) console.warn(`lora-export.test.ts: ${SKIP_CHECKER}`);

/** Run check_lora.py on a file (and optionally the expected module list); its one-line verdict. */
function checkLora(file: Uint8Array, expected?: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'lora-'));
  writeFileSync(join(dir, 'lora.safetensors'), file);
  const args = [checker, join(dir, 'lora.safetensors')];
  if (expected) {
    writeFileSync(join(dir, 'expected.json'), JSON.stringify(expected));
    args.push(join(dir, 'expected.json'));
  }
  return execFileSync('/usr/bin/python3', args, { encoding: 'utf8' });
}

const zeroModules = (specs: LoraModuleSpec[]) =>
  specs.map((spec) => {
    const s = kohyaShapes(spec);
    return { spec, down: new Float32Array(s.down.reduce((a, b) => a * b, 1)).fill(0.01), up: new Float32Array(s.up.reduce((a, b) => a * b, 1)) };
  });
const META = { ss_network_module: 'networks.lora', ss_network_dim: '8', ss_network_alpha: '4', ss_learning_rate: '0.0001', ss_lr_scheduler: 'cosine', ss_max_train_steps: '10', ss_gradient_accumulation_steps: '1', ss_batch_size_per_device: '1', ss_base_model_version: 'sd_v1', ss_seed: '0', ss_resolution: '(512, 512)', 'modelspec.architecture': 'stable-diffusion-v1/lora' };

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
    const file = await writeLoraFile(zeroModules(specs), META, 'fp16');
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
  });

  it.skipIf(!haveChecker)(`is read as A1111/ComfyUI read it (check_lora.py)${haveChecker ? '' : ` (${SKIP_CHECKER})`}`, async () => {
    const file = await writeLoraFile(zeroModules(loraTargets(SD15_UNET, SD15_CLIP, { rank: 8, alpha: 4 })), META, 'fp16');
    expect(checkLora(file, expectedModules())).toMatch(/^ok: 264 modules \(192 unet, 72 te\)/);
  });
});

describe('kohya export of an SD 1.5 LoCon', () => {
  // From the reference: 3x3 convs get a kernel-sized down and a 1x1 up at the conv rank; conv_shortcut
  // (1x1 conv) is written [r, in, 1, 1] / [out, r, 1, 1] as proj_in is; time_emb_proj (Linear) [r, in] / [out, r].
  const specs = loraTargets(SD15_UNET, SD15_CLIP, { rank: 8, alpha: 4, convRank: 4 });
  it('writes the conv modules with the shapes kohya and A1111 expect, conv alpha = conv dim by default', async () => {
    const f = await openSafetensors(bytesSource(await writeLoraFile(zeroModules(specs), META, 'fp16')));
    const shape = (k: string) => f.tensors.get(`lora_unet_${k}`)?.shape;
    expect(shape('down_blocks_1_resnets_0_conv1.lora_down.weight')).toEqual([4, 320, 3, 3]);
    expect(shape('down_blocks_1_resnets_0_conv1.lora_up.weight')).toEqual([640, 4, 1, 1]);
    expect(shape('down_blocks_1_resnets_0_conv_shortcut.lora_down.weight')).toEqual([8, 320, 1, 1]);
    expect(shape('down_blocks_1_resnets_0_conv_shortcut.lora_up.weight')).toEqual([640, 8, 1, 1]);
    expect(shape('down_blocks_1_resnets_0_time_emb_proj.lora_down.weight')).toEqual([8, 1280]);
    expect(shape('down_blocks_0_downsamplers_0_conv.lora_down.weight')).toEqual([4, 320, 3, 3]);
    expect(shape('up_blocks_0_upsamplers_0_conv.lora_up.weight')).toEqual([1280, 4, 1, 1]);
    expect(await f.readTensor('lora_unet_down_blocks_1_resnets_0_conv1.alpha')).toEqual(Float32Array.of(4));
    expect(await f.readTensor('lora_unet_down_blocks_1_resnets_0_conv_shortcut.alpha')).toEqual(Float32Array.of(4));
    // 22 ResBlocks x (conv1, conv2, time_emb_proj), 14 shortcuts (2 down, all 12 up: their inputs are concatenated), 3 down- and 3 upsamplers.
    expect([...f.tensors.keys()].filter((k) => k.endsWith('.alpha')).length).toBe(264 + 22 * 3 + 14 + 6);
  });
  it.skipIf(!haveChecker)(`is read as A1111/ComfyUI read it (check_lora.py)${haveChecker ? '' : ` (${SKIP_CHECKER})`}`, async () => {
    expect(checkLora(await writeLoraFile(zeroModules(specs), META, 'fp16'))).toMatch(/^ok: 350 modules \(278 unet, 72 te\)/);
  });
});

describe('reading a LoRA back to resume', () => {
  it('round-trips fp32 weights; refuses a file of another base model', async () => {
    const { readLoraFile } = await import('./lora-file.js');
    const { TINY_UNET } = await import('./tiny.js');
    const specs = loraTargets(TINY_UNET, null, { rank: 4, alpha: 4 });
    const modules = specs.map((spec, i) => {
      const s = kohyaShapes(spec);
      return { spec, down: Float32Array.from({ length: s.down.reduce((a, b) => a * b, 1) }, (_, j) => Math.sin(i + j)), up: Float32Array.from({ length: s.up.reduce((a, b) => a * b, 1) }, (_, j) => Math.cos(i * j)) };
    });
    const file = await writeLoraFile(modules, { ss_network_module: 'networks.lora' }, 'fp32');
    const back = await readLoraFile(file, specs);
    expect(back.weights.size).toBe(specs.length);
    expect(back.notes).toEqual([]);
    const m0 = back.weights.get('lora_unet_down_blocks_0_attentions_0_proj_in')!;
    expect(m0).toMatchObject({ rank: 4, alpha: 4 });
    expect(m0.down).toEqual(modules[0]!.down);
    const wider = loraTargets({ ...TINY_UNET, blockChannels: [64, 64, 64] }, null, { rank: 4, alpha: 4 });
    await expect(readLoraFile(file, wider, 'old.safetensors')).rejects.toThrow(/old\.safetensors: .*another base model/);
  });

  it("takes the file's rank and alpha over the settings' and says so", async () => {
    const { readLoraFile } = await import('./lora-file.js');
    const { TINY_UNET } = await import('./tiny.js');
    const { LoraNetwork } = await import('./lora.js');
    const { MetaBackend } = await import('../engine/backend.js');
    // Another trainer's file: rank 8, alpha 2 (scale 0.25); this run is set to rank 4, alpha 4 (scale 1).
    const fileSpecs = loraTargets(TINY_UNET, null, { rank: 8, alpha: 2 });
    const file = await writeLoraFile(zeroModules(fileSpecs), { ss_network_module: 'networks.lora' }, 'fp16');
    const settings = loraTargets(TINY_UNET, null, { rank: 4, alpha: 4 });
    const back = await readLoraFile(file, settings, 'other.safetensors');
    expect([...back.weights.values()].every((w) => w.rank === 8 && w.alpha === 2)).toBe(true);
    expect(back.notes).toEqual([
      `other.safetensors: ${settings.length} modules have rank 8, alpha 2 (scale 0.25); the settings' network dim and alpha give rank 4, alpha 4 (scale 1). Training continues with the file's rank and alpha.`,
    ]);
    // The network built from it trains (and would save) at the file's rank and scale.
    const net = new LoraNetwork(new MetaBackend(), settings, 0, back.weights);
    expect(net.specs.every((s) => s.rank === 8 && s.alpha === 2)).toBe(true);
    expect([...net.parameters()][0]![1].shape).toEqual([8, 32]);
    net.dispose();
    // An fp16 alpha of 0.1 (stored as 0.09998) is the settings' 0.1, not a difference.
    const tenth = await writeLoraFile(zeroModules(loraTargets(TINY_UNET, null, { rank: 4, alpha: 0.1 })), {}, 'fp16');
    const same = await readLoraFile(tenth, loraTargets(TINY_UNET, null, { rank: 4, alpha: 0.1 }));
    expect(same.notes).toEqual([]);
    expect(same.weights.get('lora_unet_down_blocks_0_attentions_0_proj_in')!.alpha).toBe(0.1);
  });
});
