// GEGLU (value times erf-GELU of the gate) forward and backward against float64, several workgroups, pipeline reuse and shape errors.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../backend.js';
import { randomArray } from '../testing/allclose.js';
import { testBackend } from '../testing/gpu.js';
import { checkOp } from '../testing/opcheck.js';
import { pipelinesCompiledBy } from '../testing/pipelines.js';
import { empty, tensor } from '../tensor.js';
import { geglu } from './geglu.js';

/** erf in float64: Maclaurin series for |x| < 4 (cancellation costs at most ~1e-11, near |x| = 4), asymptotic tail beyond. */
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 4) return Math.sign(x) * (1 - (Math.exp(-ax * ax) / (ax * Math.sqrt(Math.PI))) * (1 - 1 / (2 * ax * ax)));
  let term = x, sum = x;
  for (let n = 1; n < 100 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
const dgelu = (x: number) => 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-(x * x) / 2)) / Math.sqrt(2 * Math.PI);

/** GEGLU of rows [R, 2F] in float64 (value first, gate second), and its VJP. */
function refGeglu(R: number, F: number) {
  const at = (r: number, j: number) => [r * 2 * F + j, r * 2 * F + F + j] as const;
  return {
    reference: ([x]: Float64Array[]) =>
      Float64Array.from({ length: R * F }, (_, i) => {
        const [iv, ig] = at(Math.floor(i / F), i % F);
        return x![iv]! * gelu(x![ig]!);
      }),
    referenceGrad: ([x]: Float64Array[], g: Float64Array) => {
      const d = new Float64Array(x!.length);
      for (let i = 0; i < R * F; i++) {
        const [iv, ig] = at(Math.floor(i / F), i % F);
        d[iv] = g[i]! * gelu(x![ig]!);
        d[ig] = g[i]! * x![iv]! * dgelu(x![ig]!);
      }
      return [d];
    },
  };
}

describe('geglu', () => {
  it('reference erf is float64-accurate', () => {
    // erf(0.5), erf(1), erf(2), erf(3.5) to 15 digits (Abramowitz & Stegun table 7.1 / mpmath)
    expect(erf(0.5)).toBeCloseTo(0.520499877813047, 14);
    expect(erf(1)).toBeCloseTo(0.842700792949715, 14);
    expect(erf(-2)).toBeCloseTo(-0.995322265018953, 14);
    expect(erf(3.5)).toBeCloseTo(0.999999256901628, 12);
  });

  it('[2, 3, 10] → [2, 3, 5]: value · gelu(gate), gates over [-5, 5]', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 3, 10], data: randomArray(60, 4, -5, 5), grad: true }],
      forward: ([x]) => geglu(x!),
      ...refGeglu(6, 5),
      // the kernel's f32 erf is a rational fit good to about 1e-7
      tol: { atol: 2e-6, rtol: 1e-5 },
      gradTol: { atol: 5e-6, rtol: 1e-5 },
    });
  });

  it('[3, 700] → [3, 350]: several workgroups', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [3, 700], data: randomArray(2100, 8, -3, 3), grad: true }],
      forward: ([x]) => geglu(x!),
      ...refGeglu(3, 350),
      tol: { atol: 2e-6, rtol: 1e-5 },
      gradTol: { atol: 5e-6, rtol: 1e-5 },
    });
  });

  it('another shape reuses both pipelines', async () => {
    const b = await testBackend();
    const run = (R: number, F: number) => checkOp(b, { inputs: [{ shape: [R, 2 * F], data: randomArray(R * 2 * F, 5, -3, 3), grad: true }], forward: ([x]) => geglu(x!), ...refGeglu(R, F), tol: { atol: 2e-6, rtol: 1e-5 }, gradTol: { atol: 5e-6, rtol: 1e-5 }, fd: { samples: 1 } });
    await run(4, 6);
    expect(await pipelinesCompiledBy(b, () => run(9, 33))).toBe(0);
  });

  it('rejects an odd last dimension; counts on the meta device', async () => {
    const b = await testBackend();
    const x = tensor(b, new Float32Array(6), [2, 3]);
    expect(() => geglu(x)).toThrow(/must be even/);
    x.dispose();
    const meta = new MetaBackend();
    const h = empty(meta, [2, 4096, 2560]);
    const y = geglu(h);
    expect(y.shape).toEqual([2, 4096, 1280]);
    expect(meta.stats.byKernel.get('geglu')).toEqual({ dispatches: 1, flops: 26 * y.size, bytes: 12 * y.size });
    h.dispose();
    y.dispose();
  });
});
