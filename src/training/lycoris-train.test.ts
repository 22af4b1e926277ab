// LoHa, LoKr and DoRA train end to end on the tiny pipeline (LoHa with LoCon convs, DoRA with the text encoder): each layer starts as the
// base model's, the zero-started tensors get gradients, the loss falls, the file has LyCORIS' keys and metadata, and reading it back (or its run state) continues the same network.
import { describe, expect, it } from 'vitest';
import { kohyaName } from '../model/lora.js';
import { readNetworkFile } from '../model/lycoris-file.js';
import { moduleLayout } from '../model/lycoris.js';
import { bytesSource, openSafetensors } from '../model/safetensors.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';
import { Rng } from './rng.js';
import { readRunStateFile } from './run-state.js';
import { readGradients } from './step.js';
import { sampleItems, useTinyPipeline } from './testing.js';
import { loraSpecs, Trainer } from './trainer.js';

const base: TrainConfig = { ...DEFAULT_CONFIG, resolution: 64, enableBuckets: false, flipAug: false, gradientCheckpointing: false, networkDropout: 0, networkDim: 2, networkAlpha: 1, convDim: 2, convAlpha: 1, unetLr: 3e-3, textEncoderLr: 1e-3, savePrecision: 'fp32', baseSteps: 6, warmup: 0 };

const tiny = useTinyPipeline();

/** Losses of `steps` updates on one fixed example (image 0, one draw), the trainer left for inspection. */
async function run(config: TrainConfig, steps: number): Promise<{ t: Trainer; losses: number[]; start: number }> {
  const t = new Trainer(tiny.pipeline, config, sampleItems(1));
  const start = await startsAtBase(t);
  await t.cacheLatents();
  const ex = t.drawExample(0, new Rng(7));
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) losses.push((await t.optimizerStep([[ex]])).loss);
  return { t, losses, start };
}

/** Each adapted layer's weight through the network's adapter hook, against the frozen weight (max |difference| / max |w|). */
async function startsAtBase(t: Trainer): Promise<number> {
  let worst = 0;
  for (const s of t.lora.specs) {
    const store = s.part === 'unet' ? t.pipeline.unet.weights : t.pipeline.clip.weights;
    const w0 = store.get(`${s.path}.weight`);
    const w = s.pointwise ? w0.reshape([s.outFeatures, s.inFeatures]) : w0;
    const merged = t.lora.adapter(s.part).weight!(s.path, w)!;
    const [a, b] = [await merged.read(), await w.read()];
    const top = b.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    worst = Math.max(worst, a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0) / top);
    merged.dispose();
    if (w !== w0) w.dispose();
  }
  return worst;
}

describe('LyCORIS network types on the tiny pipeline', () => {
  for (const [type, zeroKey, te, convDim] of [['loha', 'hada_w2_a', false, 2], ['lokr', 'lokr_w2_b', false, 0], ['dora', 'lora_up.weight', true, 0]] as const) {
    it(`${type}: starts at the base model, learns, saves LyCORIS keys and continues from its file`, async () => {
      const config = { ...base, networkType: type, trainTextEncoder: te, convDim, convAlpha: convDim / 2 };
      const { t, losses, start } = await run(config, 2);
      // LoHa and LoKr start with a zero delta (W + 0 is W exactly); DoRA's W·‖W‖/(‖W‖ + eps) is W to f32 rounding.
      expect(start).toBeLessThanOrEqual(type === 'dora' ? 1e-6 : 0);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(losses[1]!).toBeLessThan(losses[0]!);
      const grads = await readGradients(t.lora);
      const zeroStarted = [...grads].filter(([k]) => k.endsWith(`.${zeroKey}`));
      expect(zeroStarted.length).toBe(t.lora.specs.length);
      for (const [k, g] of zeroStarted) expect(g.some((v) => v !== 0), k).toBe(true);
      expect(t.lora.specs.some((s) => s.kind === 'conv')).toBe(convDim > 0);
      expect(t.lora.specs.some((s) => s.part === 'te')).toBe(te);

      const file = await t.exportLora();
      const f = await openSafetensors(bytesSource(file));
      const want = t.lora.specs.flatMap((s) => [...moduleLayout(type, s).params.map((p) => `${kohyaName(s)}.${p.key}`), `${kohyaName(s)}.alpha`]);
      expect([...f.tensors.keys()].sort()).toEqual(want.sort());
      expect(f.metadata.ss_network_module).toBe('lycoris.kohya');
      expect(JSON.parse(f.metadata.ss_network_args!)).toMatchObject({ algo: type === 'dora' ? 'lora' : type, ...(type === 'dora' ? { dora_wd: 'True' } : {}), ...(convDim ? { conv_dim: '2' } : {}) });

      const specs = loraSpecs(tiny.pipeline, config);
      const read = await readNetworkFile(file, specs, type);
      const again = new Trainer(tiny.pipeline, config, sampleItems(1), {}, read.weights);
      const before = await Promise.all([...t.lora.parameters()].map(([, p]) => p.read()));
      const after = await Promise.all([...again.lora.parameters()].map(([, p]) => p.read()));
      after.forEach((a, i) => expect(a).toEqual(before[i]));
      again.dispose();
      // The run state (exact resume) carries every LyCORIS tensor too.
      const state = await readRunStateFile(await t.exportState());
      expect(state).not.toBeNull();
      const resumed = new Trainer(tiny.pipeline, config, sampleItems(1), {}, undefined, state!);
      const fromState = await Promise.all([...resumed.lora.parameters()].map(([, p]) => p.read()));
      fromState.forEach((a, i) => expect(a).toEqual(before[i]));
      resumed.dispose();
      await expect(readNetworkFile(file, specs, 'lora')).rejects.toThrow(/set the network type to/);
      t.dispose();
    }, 10 * 60_000);
  }
});
