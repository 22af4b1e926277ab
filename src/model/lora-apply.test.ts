// A kohya LoRA file, and LoHa/LoKr/DoRA files from our exporter, applied for inference: their effect on the tiny U-Net's eps equals the network's that wrote them, strength scales it as a float64 reference says, bad files are refused by name.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { noGrad } from '../engine/autograd.js';
import { f32ToF16Bits, roundF16 } from '../engine/dtype.js';
import { scope, tensor, type Tensor } from '../engine/tensor.js';
import { assertClose, maxRelError, randomArray } from '../engine/testing/allclose.js';
import { testBackend } from '../engine/testing/gpu.js';
import { refConv } from '../engine/testing/ref.js';
import { clipForward } from './clip.js';
import { Layers, type Adapter } from './layers.js';
import { atStrength, loadInferenceLora } from './lora-apply.js';
import { LoraNetwork, loraTargets, type LoraInit, type LoraModuleSpec } from './lora.js';
import { networkMetadata, writeLycorisFile, type LycorisWeights } from './lycoris-file.js';
import { folderRepo } from './node-repo.js';
import { loadDiffusers, type Pipeline } from './pipeline.js';
import { writeSafetensors, type TensorToWrite } from './safetensors-write.js';
import { unetForward } from './unet.js';
import { TINY_CLIP, TINY_UNET } from './tiny.js';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

/** kohya's module name, written here from the format (lora_<part>_ + the diffusers path with dots as underscores). */
const kohya = (part: string, path: string) => `lora_${part}_${path.replaceAll('.', '_')}`;

/** One module's factors as a file from another trainer holds them: its own rank, f16-rounded values, alpha or none. */
interface FileModule {
  spec: LoraModuleSpec;
  rank: number;
  alpha: number | null;
  down: Float32Array;
  up: Float32Array;
}

function fileModules(specs: LoraModuleSpec[]): FileModule[] {
  return specs.map((spec, i) => {
    const rank = i % 3 === 0 ? 3 : spec.rank; // other ranks than the settings', module by module
    const alpha = i % 4 === 1 ? null : rank / 2 + (i % 5); // some without an alpha (alpha = rank then)
    const down = roundF16(randomArray(rank * spec.inFeatures * spec.kernel * spec.kernel, 100 + i, -0.4, 0.4));
    const up = roundF16(randomArray(spec.outFeatures * rank, 900 + i, -0.4, 0.4));
    return { spec, rank, alpha, down, up };
  });
}

/** The modules in kohya's layout (F16; 1x1 convs and LoCon as 4-d kernels), written without our LoRA writer. */
function kohyaFile(mods: FileModule[], extra: TensorToWrite[] = []): Uint8Array {
  const f16 = (a: Float32Array) => Uint16Array.from(a, (v) => f32ToF16Bits(v));
  const tensors: TensorToWrite[] = mods.flatMap(({ spec: s, rank, alpha, down, up }) => {
    const four = s.kind === 'conv' || s.pointwise;
    const name = kohya(s.part, s.path);
    const t: TensorToWrite[] = [
      { name: `${name}.lora_down.weight`, dtype: 'F16', shape: four ? [rank, s.inFeatures, s.kernel, s.kernel] : [rank, s.inFeatures], data: f16(down) },
      { name: `${name}.lora_up.weight`, dtype: 'F16', shape: four ? [s.outFeatures, rank, 1, 1] : [s.outFeatures, rank], data: f16(up) },
    ];
    if (alpha !== null) t.push({ name: `${name}.alpha`, dtype: 'F16', shape: [], data: f16(Float32Array.of(alpha)) });
    return t;
  });
  return writeSafetensors([...tensors, ...extra], { ss_network_module: 'networks.lora' });
}

/** Our own network holding the same weights, each module at the file's rank and alpha. */
function ourNetwork(p: Pipeline, mods: FileModule[]): LoraNetwork {
  const init = new Map<string, LoraInit>(mods.map((m) => [kohya(m.spec.part, m.spec.path), { down: m.down, up: m.up, rank: m.rank, alpha: m.alpha ?? m.rank }]));
  return new LoraNetwork(p.unet.weights.get('conv_in.weight').backend, mods.map((m) => m.spec), 0, init);
}

/** The U-Net's eps for a fixed latent, timestep and prompt, with these adapters (null: the base model). */
async function eps(p: Pipeline, unet: Adapter | null, te: Adapter | null): Promise<Float32Array> {
  const backend = p.unet.weights.get('conv_in.weight').backend;
  const ids = p.tokenizer.encodeForModel('a photo of a cat', p.clip.config.maxPositions);
  const out = noGrad(() =>
    scope(() => {
      const ctx = clipForward(new Layers(p.clip.weights, te), p.clip.config, ids, 1);
      return unetForward(new Layers(p.unet.weights, unet), p.unet.config, tensor(backend, randomArray(4 * 8 * 8, 5), [1, 4, 8, 8]), [500], ctx);
    }),
  );
  const v = await out.read();
  out.dispose();
  return v;
}

const diff = (a: Float32Array, b: Float32Array) => a.map((v, i) => v - b[i]!);

describe('kohya LoRA files for inference (tiny pipeline, Dawn)', () => {
  it("a file's effect on eps (LoCon convs, other ranks, absent alphas, text encoder) equals our adapter's, at strength 1", async () => {
    const backend = await testBackend();
    const p = await loadDiffusers(backend, folderRepo(`${ROOT}/public/tiny`));
    const specs = loraTargets(p.unet.config, p.clip.config, { rank: 4, alpha: 4, convRank: 2, convAlpha: 2, textEncoder: true });
    expect(specs.some((s) => s.kind === 'conv') && specs.some((s) => s.pointwise) && specs.some((s) => s.part === 'te')).toBe(true);
    const mods = fileModules(specs);
    const stray = [{ name: 'lora_unet_no_such_layer.lora_down.weight', dtype: 'F32' as const, shape: [1, 2], data: new Float32Array(2) }, { name: 'lora_unet_no_such_layer.lora_up.weight', dtype: 'F32' as const, shape: [2, 1], data: new Float32Array(2) }];
    const file = await loadInferenceLora(backend, p, kohyaFile(mods, stray), 'other.safetensors');
    expect(file.modules).toEqual({ unet: specs.filter((s) => s.part === 'unet').length, te: specs.filter((s) => s.part === 'te').length });
    expect(file.notes.join('\n')).toMatch(/1 of its \d+ modules are not layers of this model.*no_such_layer/);
    expect(file.notes.join('\n')).toMatch(/modules have no alpha; they are applied with alpha = rank/);

    const base = await eps(p, null, null);
    const ours = ourNetwork(p, mods);
    const viaOurs = await eps(p, ours.adapter('unet'), ours.adapter('te'));
    const viaFile = await eps(p, file.unet, file.te);
    const effect = diff(viaOurs, base);
    expect(Math.max(...effect.map(Math.abs))).toBeGreaterThan(0.05); // the LoRA changes eps by much more than rounding
    const err = maxRelError(diff(viaFile, base), effect);
    console.log(`kohya file vs our adapter: eps effect max ${Math.max(...effect.map(Math.abs)).toFixed(4)}, relative difference ${err.toExponential(2)}`);
    expect(err).toBeLessThan(1e-4);
    expect([atStrength(file.unet, 0), atStrength(file.unet, 1), atStrength(null, 1)]).toEqual([null, file.unet, null]);
    for (const n of [ours, file]) n.dispose();
    p.dispose();
  }, 10 * 60_000);

  it('LoHa, LoKr and DoRA files from our exporter move eps as the networks that wrote them do (DoRA at 0.5 too); strength 0 is the base bit for bit', async () => {
    const backend = await testBackend();
    const p = await loadDiffusers(backend, folderRepo(`${ROOT}/public/tiny`));
    // Rank 2 factors LoKr's w2 on the linears; conv rank 4 keeps it full on the 3x3 convs (both forms in one file).
    const specs = loraTargets(p.unet.config, p.clip.config, { rank: 2, alpha: 1, convRank: 4, convAlpha: 3, textEncoder: true });
    const base = await eps(p, null, null);
    for (const type of ['loha', 'lokr', 'dora'] as const) {
      const net = new LoraNetwork(backend, specs, 3, undefined, { type, base: { unet: p.unet.weights, te: p.clip.weights } });
      // Every tensor non-zero and f16-exact (the file is saved in fp16); DoRA's magnitudes off their starting norms by up to 20%.
      const modules = new Map<LoraModuleSpec, LycorisWeights>();
      for (const [name, t, spec] of net.parameters()) {
        const n = t.shape.reduce((a, b) => a * b, 1);
        const v = name.endsWith('.dora_scale') ? (await t.read()).map((m, i) => m * (1 + 0.2 * randomArray(n, name.length)[i]!)) : randomArray(n, name.length + n, -0.6, 0.6);
        t.write(roundF16(v));
        const m = modules.get(spec) ?? { spec, tensors: new Map<string, Float32Array>() };
        m.tensors.set(name.slice(name.indexOf('.') + 1), await t.read());
        modules.set(spec, m);
      }
      const bytes = await writeLycorisFile(type, [...modules.values()], networkMetadata(type, { convDim: 4, convAlpha: 3 }, 0), 'fp16');
      const file = await loadInferenceLora(backend, p, bytes, `${type}.safetensors`);
      expect([file.modules, file.notes]).toEqual([{ unet: specs.filter((s) => s.part === 'unet').length, te: specs.filter((s) => s.part === 'te').length }, [`${type}.safetensors: a ${{ loha: 'LoHa', lokr: 'LoKr', dora: 'DoRA' }[type]} network (LyCORIS), applied as its merged weights`]]);
      // W + s·(M − W) is linear in the delta for LoHa and LoKr (pinned at 0.5 for one layer below); DoRA's normalised weight is not, so its file is checked at 0.5 too.
      for (const s of type === 'dora' ? [1, 0.5] : [1]) {
        const effect = diff(await eps(p, atStrength(net.adapter('unet'), s), atStrength(net.adapter('te'), s)), base);
        const err = maxRelError(diff(await eps(p, atStrength(file.unet, s), atStrength(file.te, s)), base), effect);
        console.log(`${type} file vs network at strength ${s}: eps effect max ${Math.max(...effect.map(Math.abs)).toFixed(4)}, relative difference ${err.toExponential(2)}`);
        expect(Math.max(...effect.map(Math.abs))).toBeGreaterThan(0.05);
        expect(err).toBeLessThan(1e-4);
      }
      if (type === 'loha') expect(await eps(p, atStrength(file.unet, 0), atStrength(file.te, 0))).toEqual(base);
      net.dispose();
      file.dispose();
    }
    p.dispose();
  }, 10 * 60_000);

  it('a linear and a LoCon 3x3 conv at strength s add s · alpha/rank · up(down(x)) to the base layer, as float64 says', async () => {
    const backend = await testBackend();
    const p = await loadDiffusers(backend, folderRepo(`${ROOT}/public/tiny`));
    const [lin, conv] = ['down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q', 'down_blocks.0.resnets.0.conv1'];
    const specs = loraTargets(p.unet.config, null, { rank: 2, alpha: 2, convRank: 2 }).filter((s) => s.path === lin || s.path === conv);
    const mods = fileModules(specs).map((m) => ({ ...m, alpha: 1.5 }));
    const f = await loadInferenceLora(backend, p, kohyaFile(mods));
    const s = 0.7;
    const L = new Layers(p.unet.weights, atStrength(f.unet, s));
    const f64 = (t: Tensor) => t.read().then((v) => Float64Array.from(v));
    const [ml, mc] = [mods.find((m) => m.spec.path === lin)!, mods.find((m) => m.spec.path === conv)!];

    // Linear: x [3, in], W [out, in], no bias on attention projections.
    const [inF, outF, r] = [ml.spec.inFeatures, ml.spec.outFeatures, ml.rank];
    const x = randomArray(3 * inF, 11);
    const y = noGrad(() => scope(() => L.linear(lin, tensor(backend, x, [3, inF]))));
    const W = await f64(p.unet.weights.get(`${lin}.weight`));
    const want = new Float64Array(3 * outF);
    for (let n = 0; n < 3; n++)
      for (let o = 0; o < outF; o++) {
        let acc = 0;
        for (let i = 0; i < inF; i++) acc += x[n * inF + i]! * W[o * inF + i]!;
        for (let k = 0; k < r; k++) {
          let h = 0;
          for (let i = 0; i < inF; i++) h += x[n * inF + i]! * ml.down[k * inF + i]!;
          acc += s * (1.5 / r) * h * ml.up[o * r + k]!;
        }
        want[n * outF + o] = acc;
      }
    assertClose(await y.read(), want, { atol: 1e-4, rtol: 1e-3 }, 'linear at strength 0.7');

    // 3x3 conv, padding 1, on [1, C, 6, 6]: base conv + bias, plus the delta through the rank.
    const [C, O, rc] = [mc.spec.inFeatures, mc.spec.outFeatures, mc.rank];
    const xc = randomArray(C * 36, 12);
    const yc = noGrad(() => scope(() => L.conv(conv, tensor(backend, xc, [1, C, 6, 6]), { padding: 1 })));
    const g = (c: number, o: number, k: number) => ({ N: 1, C: c, H: 6, W: 6, O: o, k, stride: 1, pad: [k >> 1, k >> 1, k >> 1, k >> 1] as [number, number, number, number] });
    const baseC = refConv(xc, await f64(p.unet.weights.get(`${conv}.weight`)), await f64(p.unet.weights.get(`${conv}.bias`)), g(C, O, 3));
    const h = refConv(xc, Float64Array.from(mc.down), null, g(C, rc, 3));
    const d = refConv(h, Float64Array.from(mc.up), null, g(rc, O, 1));
    assertClose(await yc.read(), baseC.map((v, i) => v + s * (1.5 / rc) * d[i]!), { atol: 1e-4, rtol: 1e-3 }, 'LoCon conv at strength 0.7');
    // A weight-space network (LoHa, factors made non-zero): y is linear in W, so strength 0.5 lands halfway between base and full.
    const loha = new LoraNetwork(backend, [{ ...ml.spec, rank: 2, alpha: 2 }], 0, undefined, { type: 'loha' });
    for (const [k, t] of loha.parameters()) t.write(randomArray(t.shape.reduce((a, b) => a * b, 1), k.length, -0.5, 0.5));
    const at = async (st: number) => {
      const out = noGrad(() => scope(() => new Layers(p.unet.weights, atStrength(loha.adapter('unet'), st)).linear(lin, tensor(backend, x, [3, inF]))));
      const v = await out.read();
      out.dispose();
      return v;
    };
    const [y0, y1, yh] = [await at(0), await at(1), await at(0.5)];
    expect(maxRelError(y1, y0)).toBeGreaterThan(0.1);
    assertClose(yh, y0.map((v, i) => (v + y1[i]!) / 2), { atol: 1e-5, rtol: 1e-4 }, 'LoHa at strength 0.5');
    loha.dispose();
    y.dispose();
    yc.dispose();
    f.dispose();
    p.dispose();
  }, 10 * 60_000);

  it("DoRA with its magnitude per output row (LyCORIS' wd_on_out, dora_scale [out, 1]) gives W + s·(W'·m/(‖W'‖ + eps) − W), the norm per row, as float64 says", async () => {
    const backend = await testBackend();
    const p = await loadDiffusers(backend, folderRepo(`${ROOT}/public/tiny`));
    const path = 'down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj'; // [256, 32]: rows and columns differ
    const [out, inp] = p.unet.weights.get(`${path}.weight`).shape as [number, number];
    const [W, bias] = [Float64Array.from(await p.unet.weights.get(`${path}.weight`).read()), await p.unet.weights.get(`${path}.bias`).read()];
    const [r, alpha] = [2, 1];
    const [down, up, m] = [randomArray(r * inp, 1, -0.5, 0.5), randomArray(out * r, 2, -0.5, 0.5), randomArray(out, 3, 0.5, 1.5)];
    const k = kohya('unet', path);
    const f32 = (name: string, shape: number[], data: ArrayLike<number>): TensorToWrite => ({ name: `${k}.${name}`, dtype: 'F32', shape, data: Float32Array.from(data) });
    const bytes = writeSafetensors([f32('lora_down.weight', [r, inp], down), f32('lora_up.weight', [out, r], up), f32('dora_scale', [out, 1], m), f32('alpha', [], [alpha])]);
    const f = await loadInferenceLora(backend, p, bytes, 'wd-on-out.safetensors');
    // float64 from the f32 values the file holds: W' = W + alpha/r · up·down, each row scaled to m[o] / (‖W'[o]‖ + eps).
    const [d32, u32, m32] = [Float32Array.from(down), Float32Array.from(up), Float32Array.from(m)];
    const wd = new Float64Array(out * inp);
    for (let o = 0; o < out; o++) {
      const row = Array.from({ length: inp }, (_, i) => W[o * inp + i]! + (alpha / r) * Array.from({ length: r }, (_, j) => u32[o * r + j]! * d32[j * inp + i]!).reduce((a, b) => a + b, 0));
      const norm = Math.sqrt(row.reduce((a, v) => a + v * v, 0));
      row.forEach((v, i) => (wd[o * inp + i] = (v * m32[o]!) / (norm + 1.1920928955078125e-7)));
    }
    const x = randomArray(3 * inp, 4);
    for (const s of [1, 0.6]) {
      const y = noGrad(() => scope(() => new Layers(p.unet.weights, atStrength(f.unet, s)).linear(path, tensor(backend, x, [3, inp]))));
      const want = new Float64Array(3 * out);
      for (let n = 0; n < 3; n++)
        for (let o = 0; o < out; o++) {
          let acc = bias[o]!;
          for (let i = 0; i < inp; i++) acc += x[n * inp + i]! * (W[o * inp + i]! + s * (wd[o * inp + i]! - W[o * inp + i]!));
          want[n * out + o] = acc;
        }
      assertClose(await y.read(), want, { atol: 1e-4, rtol: 1e-3 }, `DoRA over the output axis at strength ${s}`);
      y.dispose();
    }
    f.dispose();
    p.dispose();
  }, 10 * 60_000);

  it('refuses other layouts and damaged modules by name, saying what to do', async () => {
    const backend = await testBackend();
    const model = { unet: { config: TINY_UNET }, clip: { config: TINY_CLIP } };
    const t = (name: string, shape: number[]): TensorToWrite => ({ name, dtype: 'F32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    const load = (ts: TensorToWrite[]) => loadInferenceLora(backend, model, writeSafetensors(ts), 'x.safetensors');
    const q = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q';
    await expect(load([t('lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight', [4, 8])])).rejects.toThrow(/x\.safetensors is an SDXL LoRA.*load an SD 1\.x LoRA/);
    await expect(load([t(`${q}.lora_down.weight`, [4, 32]), t(`${q}.lora_up.weight`, [32, 4]), t(`${q}.lora_mid.weight`, [4, 4, 1, 1])])).rejects.toThrow(/LyCORIS modules \(.*lora_mid\.weight\).*no Tucker/);
    await expect(load([t(`${q}.hada_w1_a`, [32, 4])])).rejects.toThrow(/attn1_to_q has no hada_w1_b \(a LoHa module of this layer holds hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b\)/);
    await expect(load([t(`${q}.lokr_w1_a`, [4, 2]), t(`${q}.lokr_w1_b`, [2, 4]), t(`${q}.lokr_w2`, [8, 8])])).rejects.toThrow(/attn1_to_q\.lokr_w1_a is LoKr with a factored w1 .* that this loader does not apply/);
    const dora = (m: number[]) => [t(`${q}.lora_down.weight`, [4, 32]), t(`${q}.lora_up.weight`, [32, 4]), t(`${q}.dora_scale`, m)];
    await expect(load(dora([1, 31]))).rejects.toThrow(/attn1_to_q\.dora_scale has shape \[1,31\] where this model's layer needs \[1,32\] for DoRA at rank 4 \(a file for another base model\?\)/);
    const loha = ['hada_w1_a', 'hada_w2_a'].flatMap((a) => [t(`${q}.${a}`, [32, 4]), t(`${q}.${a.replace('_a', '_b')}`, [4, 32])]);
    await expect(load([t(`${q}.dora_scale`, [1, 32]), ...loha])).rejects.toThrow(/attn1_to_q\.dora_scale is DoRA on LoHa or LoKr that this loader does not apply to LoHa modules/);
    await expect(load([t('unet.down_blocks.0.attn.to_q.lora_A.weight', [4, 4])])).rejects.toThrow(/diffusers\/PEFT layout.*convert it to kohya/);
    await expect(load([t('model.diffusion_model.out.0.weight', [4])])).rejects.toThrow(/has no LoRA modules.*is it a LoRA file/);
    await expect(load([t('lora_unet_nothing.lora_down.weight', [1, 2]), t('lora_unet_nothing.lora_up.weight', [2, 1])])).rejects.toThrow(/none of its 1 LoRA modules is a layer of this model.*another base model/);
    await expect(load([t(`${q}.lora_down.weight`, [4, 7]), t(`${q}.lora_up.weight`, [32, 4])])).rejects.toThrow(/attn1_to_q has shapes \[4,7\] \/ \[32,4\], which do not adapt this model's layer/);
    await expect(load([t(`${q}.lora_down.weight`, [4, 32])])).rejects.toThrow(/has lora_down but no lora_up/);
    await expect(load([t(`${q}.lora_down.weight`, [4, 32]), t(`${q}.lora_up.weight`, [32, 4]), t(`${q}.alpha`, [])])).rejects.toThrow(/alpha is 0; a LoRA needs an alpha above 0/);
  });
});
