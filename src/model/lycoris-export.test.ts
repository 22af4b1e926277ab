// The exported SD 1.5 LoHa, LoKr and DoRA key sets and shapes against lists written from the LyCORIS facts (not from our layout code), and the files read back.
import { describe, expect, it } from 'vitest';
import { SD15_CLIP } from './clip.js';
import { loraTargets, type LoraModuleSpec } from './lora.js';
import { detectNetworkType, readNetworkFile, writeLycorisFile } from './lycoris-file.js';
import { moduleLayout } from './lycoris.js';
import { bytesSource, openSafetensors } from './safetensors.js';
import { SD15_UNET } from './unet.js';

/** SD 1.5's 192 U-Net and 72 text-encoder module names (../shared/reference/lora-format.md). */
function sd15Modules(): string[] {
  const blocks = [...[0, 1, 2].flatMap((i) => [0, 1].map((j) => `down_blocks_${i}_attentions_${j}`)), 'mid_block_attentions_0', ...[1, 2, 3].flatMap((i) => [0, 1, 2].map((j) => `up_blocks_${i}_attentions_${j}`))];
  const inner = ['proj_in', 'proj_out', ...['attn1', 'attn2'].flatMap((a) => ['to_q', 'to_k', 'to_v', 'to_out_0'].map((p) => `transformer_blocks_0_${a}_${p}`)), 'transformer_blocks_0_ff_net_0_proj', 'transformer_blocks_0_ff_net_2'];
  const te = Array.from({ length: 12 }, (_, l) => ['self_attn_q_proj', 'self_attn_k_proj', 'self_attn_v_proj', 'self_attn_out_proj', 'mlp_fc1', 'mlp_fc2'].map((p) => `lora_te_text_model_encoder_layers_${l}_${p}`)).flat();
  return [...blocks.flatMap((b) => inner.map((i) => `lora_unet_${b}_${i}`)), ...te];
}

/** The tensors LyCORIS writes per module (lycoris/modules/loha.py, lokr.py, locon.py custom_state_dict at rank 8, factor -1). */
const SUFFIXES = { loha: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b', 'alpha'], lokr: ['lokr_w1', 'lokr_w2_a', 'lokr_w2_b', 'alpha'], dora: ['lora_down.weight', 'lora_up.weight', 'dora_scale', 'alpha'] } as const;

const filled = (specs: LoraModuleSpec[], type: keyof typeof SUFFIXES) =>
  specs.map((spec) => ({ spec, tensors: new Map(moduleLayout(type, spec).params.map((p) => [p.key, new Float32Array(p.shape.reduce((a, b) => a * b, 1)).fill(0.5)])) }));

describe('LyCORIS export of an SD 1.5 network', () => {
  const specs = loraTargets(SD15_UNET, SD15_CLIP, { rank: 8, alpha: 4 });
  for (const type of ['loha', 'lokr', 'dora'] as const) {
    it(`${type}: exactly the expected keys, LyCORIS' shapes, and it reads back as ${type}`, async () => {
      const file = await writeLycorisFile(type, filled(specs, type), { ss_network_module: 'lycoris.kohya' }, 'fp16');
      const f = await openSafetensors(bytesSource(file));
      expect([...f.tensors.keys()].sort()).toEqual(sd15Modules().flatMap((m) => SUFFIXES[type].map((s) => `${m}.${s}`)).sort());
      const shape = (k: string) => f.tensors.get(k)!.shape;
      const q = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q';
      const pin = 'lora_unet_mid_block_attentions_0_proj_in';
      const fc1 = 'lora_te_text_model_encoder_layers_11_mlp_fc1';
      expect(shape(`${q}.alpha`)).toEqual([]);
      if (type === 'loha') {
        expect([shape(`${q}.hada_w1_a`), shape(`${q}.hada_w1_b`), shape(`${pin}.hada_w2_b`)]).toEqual([[320, 8], [8, 320], [8, 1280]]);
      } else if (type === 'lokr') {
        // 320 = 16·20, 1280 = 32·40, 3072 = 48·64, 768 = 24·32; w2 factored at rank 8.
        expect([shape(`${q}.lokr_w1`), shape(`${q}.lokr_w2_a`), shape(`${q}.lokr_w2_b`)]).toEqual([[16, 16], [20, 8], [8, 20]]);
        expect([shape(`${pin}.lokr_w1`), shape(`${fc1}.lokr_w1`), shape(`${fc1}.lokr_w2_a`), shape(`${fc1}.lokr_w2_b`)]).toEqual([[32, 32], [48, 24], [64, 8], [8, 32]]);
      } else {
        expect([shape(`${pin}.lora_down.weight`), shape(`${pin}.dora_scale`), shape(`${fc1}.dora_scale`), shape(`${fc1}.lora_up.weight`)]).toEqual([[8, 1280, 1, 1], [1, 1280, 1, 1], [1, 768], [3072, 8]]);
      }
      expect(f.metadata.sshs_model_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(detectNetworkType(f.tensors.keys())).toBe(type);
      const read = await readNetworkFile(file, specs, type);
      expect(read.weights.size).toBe(264);
      expect(read.weights.get(q)!.tensors!.get(SUFFIXES[type][0])![0]).toBe(0.5);
      await expect(readNetworkFile(file, specs, type === 'loha' ? 'lokr' : 'loha')).rejects.toThrow(/set the network type to/);
    });
  }
});
