// The sinusoidal timestep embedding against a reference: cos-first (SD 1.x), sin-first with a shift, odd dims, errors and dispatch count.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../backend.js';
import { assertClose } from '../testing/allclose.js';
import { testBackend } from '../testing/gpu.js';
import { timestepEmbedding } from './timestep.js';

/**
 * diffusers' get_timestep_embedding written out: half = ⌊dim/2⌋, freq_i = exp(−ln(10000)·i/(half − shift)),
 * [sin(t·freq), cos(t·freq)], halves swapped when flip, zero-padded to an odd dim. `f32` rounds the
 * frequencies and t·freq to f32 as PyTorch does; otherwise everything is float64.
 */
function refEmbedding(ts: number[], dim: number, flip = true, shift = 0, f32 = false): Float64Array {
  const half = Math.floor(dim / 2);
  const r = f32 ? Math.fround : (v: number) => v;
  const out = new Float64Array(ts.length * dim);
  ts.forEach((t, b) => {
    for (let i = 0; i < half; i++) {
      const arg = r(t * r(Math.exp((-Math.log(10000) * i) / (half - shift))));
      const [first, second] = flip ? [Math.cos(arg), Math.sin(arg)] : [Math.sin(arg), Math.cos(arg)];
      out[b * dim + i] = first;
      out[b * dim + half + i] = second;
    }
  });
  return out;
}

const TS = [0, 1, 500, 999];

describe('timestepEmbedding', () => {
  for (const dim of [320, 8]) {
    it(`t = [${TS}], dim ${dim}: cos first (SD 1.x)`, async () => {
      const y = timestepEmbedding(await testBackend(), TS, dim);
      expect(y.shape).toEqual([4, dim]);
      const got = await y.read();
      y.dispose();
      // against float64: t·freq rounded to f32 (as diffusers computes it) is off by up to ~1e-4 rad at t = 999
      assertClose(got, refEmbedding(TS, dim), { atol: 1.5e-4, rtol: 0 }, 'vs float64');
      // against the same f32 argument: the kernel's own reduction and polynomials are good to f32 rounding
      assertClose(got, refEmbedding(TS, dim, true, 0, true), { atol: 5e-7, rtol: 0 }, 'vs f32 arguments');
    });
  }

  it('sin first, freq shift 1, odd dim (zero last column), non-integer timesteps', async () => {
    const ts = [3.5, 250, 998];
    const y = timestepEmbedding(await testBackend(), ts, 9, { flipSinToCos: false, downscaleFreqShift: 1 });
    const got = await y.read();
    y.dispose();
    assertClose(got, refEmbedding(ts, 9, false, 1), { atol: 1.5e-4, rtol: 0 }, 'vs float64');
    assertClose(got, refEmbedding(ts, 9, false, 1, true), { atol: 5e-7, rtol: 0 }, 'vs f32 arguments');
    for (let b = 0; b < 3; b++) expect(got[b * 9 + 8]).toBe(0);
  });

  it('rejects dims without frequencies; one dispatch on the meta device', () => {
    const meta = new MetaBackend();
    expect(() => timestepEmbedding(meta, [1], 2, { downscaleFreqShift: 1 })).toThrow(/leaves no frequencies/);
    const y = timestepEmbedding(meta, [1, 2], 320);
    expect(y.shape).toEqual([2, 320]);
    expect(meta.stats.dispatches).toBe(1);
    y.dispose();
    expect(meta.pool().liveBytes).toBe(0);
  });
});
