// The VAE under a storage-binding limit: activations split into channel slabs give the unsplit result, and no buffer passes the limit.
import { describe, expect, it } from 'vitest';
import { MetaBackend, type Storage } from '../engine/backend.js';
import { noGrad } from '../engine/autograd.js';
import { empty, scope, tensor, type Tensor } from '../engine/tensor.js';
import { testBackend } from '../engine/testing/gpu.js';
import { assertClose, randomArray } from '../engine/testing/allclose.js';
import { Layers } from './layers.js';
import { DeviceWeights, metaWeights } from './pipeline.js';
import { SD15_VAE, vaeDecode, vaeEncode, vaeWeightShapes, type VaeConfig } from './vae.js';

// Tiny, but with enough groups (8) for slabs of 1, 2, 4 and 8.
const CFG: VaeConfig = { inChannels: 3, latentChannels: 4, blockChannels: [16, 32, 32], layersPerBlock: 1, groups: 8, scalingFactor: 0.18215 };

/** A meta device that remembers its largest allocation. */
class Sizing extends MetaBackend {
  largest = 0;
  override alloc(bytes: number): Storage {
    this.largest = Math.max(this.largest, bytes);
    return super.alloc(bytes);
  }
}

describe('VAE in channel slabs', () => {
  it('encodes and decodes as the unsplit VAE does, at a limit that forces 2, 4 and 8 slabs', async () => {
    const b = await testBackend();
    const w = new DeviceWeights();
    let seed = 1;
    for (const [name, shape] of vaeWeightShapes(CFG)) {
      const n = shape.reduce((a, d) => a * d, 1);
      const fanIn = shape.length > 1 ? n / shape[0]! : 1;
      const data = name.endsWith('norm1.weight') || name.endsWith('norm2.weight') || name.includes('norm_out.weight') || name.endsWith('group_norm.weight') ? new Float64Array(n).fill(1) : randomArray(n, seed++, -1 / Math.sqrt(fanIn), 1 / Math.sqrt(fanIn));
      w.set(name, tensor(b, data, shape, 'f16'));
    }
    const L = new Layers(w);
    const img = randomArray(3 * 32 * 32, 99);
    const lat = randomArray(4 * 8 * 8, 98, -2, 2);
    const run = async (limit: number) => {
      const read = async (f: () => Tensor) => {
        const t = noGrad(() => scope(f));
        const d = await t.read();
        t.dispose();
        return d;
      };
      const mean = await read(() => vaeEncode(L, CFG, tensor(b, img, [1, 3, 32, 32]), { maxBindingBytes: limit }).mean);
      const dec = await read(() => vaeDecode(L, CFG, tensor(b, lat, [1, 4, 8, 8]), { maxBindingBytes: limit }));
      return { mean, dec };
    };
    const whole = await run(Infinity);
    expect(whole.mean.every(Number.isFinite) && whole.dec.every(Number.isFinite)).toBe(true);
    // The full-resolution activation is 16 x 32 x 32 f32 = 64 KiB; the decoder's upsampler makes 32 x 32 x 32 = 128 KiB.
    for (const limit of [16 * 1024]) {
      const cut = await run(limit);
      assertClose(cut.mean, whole.mean, { atol: 1e-5, rtol: 1e-4 }, `encoder mean at a ${limit / 1024} KiB limit`);
      assertClose(cut.dec, whole.dec, { atol: 1e-5, rtol: 1e-4 }, `decoder at a ${limit / 1024} KiB limit`);
    }
    w.dispose();
  });

  it('keeps every buffer within the limit, and refuses what no split fits', () => {
    const meta = new Sizing();
    const w = metaWeights(meta, vaeWeightShapes(CFG));
    // The upsampler's output, 128 KiB unsplit, in two slabs. (At smaller limits this toy is bounded by
    // split weight copies and conv_out's split-K workspace; SD's are 9 MiB and a few MiB.)
    // (Read from the backend when not given.)
    meta.maxBindingBytes = 64 * 1024;
    noGrad(() => scope(() => vaeDecode(new Layers(w), CFG, empty(meta, [1, 4, 8, 8])))).dispose();
    expect(meta.largest).toBeLessThanOrEqual(64 * 1024);
    expect(() => noGrad(() => scope(() => vaeDecode(new Layers(w), CFG, empty(meta, [1, 4, 8, 8]), { maxBindingBytes: 4 * 1024 })))).toThrow(/storage-binding limit even split by channels: lower the resolution/);
    w.dispose();
  });

  it('SD 1.5 decodes 512x512 and encodes 768x768 within WebGPU\'s default 128 MiB binding', () => {
    const limit = 128 * 2 ** 20;
    for (const [what, run] of [
      ['decode 512', (m: MetaBackend, w: DeviceWeights) => vaeDecode(new Layers(w), SD15_VAE, empty(m, [1, 4, 64, 64]), { maxBindingBytes: limit })],
      ['encode 768', (m: MetaBackend, w: DeviceWeights) => vaeEncode(new Layers(w), SD15_VAE, empty(m, [1, 3, 768, 768]), { maxBindingBytes: limit }).mean],
    ] as const) {
      const meta = new Sizing();
      const w = metaWeights(meta, vaeWeightShapes(SD15_VAE));
      const unlimited = new Sizing();
      const wu = metaWeights(unlimited, vaeWeightShapes(SD15_VAE));
      noGrad(() => scope(() => run(meta, w))).dispose();
      noGrad(() => scope(() => (what === 'decode 512' ? vaeDecode(new Layers(wu), SD15_VAE, empty(unlimited, [1, 4, 64, 64])) : vaeEncode(new Layers(wu), SD15_VAE, empty(unlimited, [1, 3, 768, 768])).mean))).dispose();
      console.log(`SD 1.5 VAE ${what}: largest buffer ${(unlimited.largest / 2 ** 20).toFixed(0)} MiB unsplit, ${(meta.largest / 2 ** 20).toFixed(0)} MiB in slabs`);
      expect(unlimited.largest).toBeGreaterThan(limit);
      expect(meta.largest).toBeLessThanOrEqual(limit);
      w.dispose();
      wu.dispose();
    }
  });
});
