// The Try-it panel's checks: each bad setting or file named with its fix, and the grid renders strength 0 once.
import { describe, expect, it } from 'vitest';
import { loraFileProblem } from './try-file.js';
import { gridPlan, gridStrengths, renderSize, TRY_DEFAULTS, tryErrors } from './try-settings.js';

/** A .safetensors file with these tensor names (one f32 value each). */
function st(names: string[]): Uint8Array {
  const header = JSON.stringify(Object.fromEntries(names.map((n, i) => [n, { dtype: 'F32', shape: [1], data_offsets: [4 * i, 4 * i + 4] }])));
  const out = new Uint8Array(8 + header.length + 4 * names.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(new TextEncoder().encode(header), 8);
  return out;
}

describe('try settings', () => {
  const ok = { ...TRY_DEFAULTS, prompt: 'a photo of sks' };

  it('accepts the defaults, and names each bad field with its range (the worker\'s own checks, through the protocol)', () => {
    expect(tryErrors(ok, 64)).toEqual({});
    const e = tryErrors({ ...ok, seed: -1, steps: 0.5, guidance: NaN, width: 100, height: 4096, strength: 1.6, gridStrengths: '0, 2' }, 64);
    expect(e.seed).toBe('Seed must be between 0 and 4294967295 (got -1)');
    expect(e.steps).toBe('Steps must be a whole number between 1 and 150 (got 0.5)');
    expect(e.guidance).toBe('Guidance is required: a number between 0 and 30');
    expect(e.width).toBe('Width must be a multiple of 64 (got 100) (or leave it empty for the training size)');
    expect(e.height).toBe('Height must be between 64 and 2048 (got 4096) (or leave it empty for the training size)');
    expect(e.strength).toBe('Strength must be between 0 and 1.5 (got 1.6)');
    expect(e.gridStrengths).toContain('“2” is not a strength from 0 to 1.5');
    // A size left empty renders at the training resolution, which must itself fit.
    expect(tryErrors({ ...ok, width: 0 }, 96).width).toContain('multiple of 64 (got 96)');
  });

  it('reads grid strengths (duplicates once) and sizes left empty take the training resolution', () => {
    expect(gridStrengths('0, 0.5 1,1')).toEqual([0, 0.5, 1]);
    expect(gridStrengths(' ')).toContain('List the strengths');
    expect(gridStrengths('0 0.1 0.2 0.3 0.4 0.5 0.6')).toContain('At most 6 strengths');
    expect(renderSize({ ...ok, width: 0, height: 128 }, 64)).toEqual({ width: 64, height: 128 });
  });

  it('renders strength 0 in the first column only, and keeps the latest 8 LoRAs', () => {
    const loras = Array.from({ length: 10 }, (_, i) => ({ label: `step ${i + 1}`, lora: i }));
    const { columns, dropped } = gridPlan(loras, [0, 0.5, 1]);
    expect(dropped).toBe(2);
    expect(columns.map((c) => c.label)).toEqual(['step 3', 'step 4', 'step 5', 'step 6', 'step 7', 'step 8', 'step 9', 'step 10']);
    expect(columns[0]!.render).toEqual([0, 0.5, 1]);
    for (const c of columns.slice(1)) expect(c.render).toEqual([0.5, 1]);
    expect(gridPlan(loras.slice(0, 2), [1]).columns.map((c) => c.render)).toEqual([[1], [1]]);
  });
});

describe('a dropped LoRA file', () => {
  it('is taken when it has kohya keys, refused by name otherwise', () => {
    expect(loraFileProblem('mine.safetensors', st(['lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight']))).toBeNull();
    expect(loraFileProblem('te.safetensors', st(['lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight']))).toBeNull();
    expect(loraFileProblem('x.ckpt', st([]))).toContain('only .safetensors');
    expect(loraFileProblem('xl.safetensors', st(['lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight']))).toContain('SDXL LoRA');
    expect(loraFileProblem('peft.safetensors', st(['unet.down_blocks.0.attentions.0.proj_in.lora_A.weight']))).toContain('diffusers/PEFT');
    expect(loraFileProblem('model.safetensors', st(['model.diffusion_model.input_blocks.0.0.weight']))).toContain('not a LoRA');
    expect(loraFileProblem('cut.safetensors', st(['lora_unet_a.lora_up.weight']).subarray(0, 20))).toContain('header length does not fit');
  });
});
