// groupNorm (with and without a fused SiLU) and layerNorm forward and backward against a reference, f16 weights and large means.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../backend.js';
import { roundF16 } from '../dtype.js';
import { discardTape, type TapeNode } from '../autograd.js';
import { sizeClass } from '../pool.js';
import { assertClose, randomArray } from '../testing/allclose.js';
import { testBackend } from '../testing/gpu.js';
import { pipelinesCompiledBy } from '../testing/pipelines.js';
import { checkOp, type OpInput } from '../testing/opcheck.js';
import { empty, param, scope, tensor, type Tensor } from '../tensor.js';
import { groupNorm, layerNorm, normRules } from './norm.js';
import { add, scale } from './elementwise.js';
import { backward } from '../grad.js';

/**
 * Float64 reference: normalize R rows of E elements (two-pass mean and variance), element e of row r
 * in channel chan(r, e); with silu, y = silu(z) of the affine output z; with g, also the VJP for x,
 * weight and bias (written from the definition, through the SiLU: gz = g·silu'(z)).
 */
function refNorm(x: Float64Array, R: number, E: number, chan: (r: number, e: number) => number, C: number, w: Float64Array | null, b: Float64Array | null, eps: number, g?: Float64Array, silu = false) {
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(C), db = new Float64Array(C);
  const sig = (z: number) => 1 / (1 + Math.exp(-z));
  for (let r = 0; r < R; r++) {
    let m = 0;
    for (let e = 0; e < E; e++) m += x[r * E + e]!;
    m /= E;
    let v = 0;
    for (let e = 0; e < E; e++) v += (x[r * E + e]! - m) ** 2;
    const rs = 1 / Math.sqrt(v / E + eps);
    const xh = (e: number) => (x[r * E + e]! - m) * rs;
    const z = (e: number) => xh(e) * (w ? w[chan(r, e)]! : 1) + (b ? b[chan(r, e)]! : 0);
    const gz = (e: number) => g![r * E + e]! * (silu ? sig(z(e)) * (1 + z(e) * (1 - sig(z(e)))) : 1);
    let s1 = 0, s2 = 0;
    for (let e = 0; e < E; e++) {
      const c = chan(r, e);
      y[r * E + e] = silu ? z(e) * sig(z(e)) : z(e);
      if (!g) continue;
      const dh = gz(e) * (w ? w[c]! : 1);
      s1 += dh;
      s2 += dh * xh(e);
      dw[c] = dw[c]! + gz(e) * xh(e);
      db[c] = db[c]! + gz(e);
    }
    if (g) for (let e = 0; e < E; e++) dx[r * E + e] = rs * (gz(e) * (w ? w[chan(r, e)]! : 1) - s1 / E - (xh(e) * s2) / E);
  }
  return { y, dx, dw, db };
}

/** The reference for groupNorm of x [N, C, S...]: rows are (n, group), channels run in blocks of S. */
function refGroupNorm(N: number, C: number, G: number, S: number, eps: number, silu = false) {
  const chan = (r: number, e: number) => (r % G) * (C / G) + Math.floor(e / S);
  return (x: Float64Array, w: Float64Array | null, b: Float64Array | null, g?: Float64Array) => refNorm(x, N * G, (C / G) * S, chan, C, w, b, eps, g, silu);
}

function refLayerNorm(R: number, C: number, eps: number) {
  return (x: Float64Array, w: Float64Array | null, b: Float64Array | null, g?: Float64Array) => refNorm(x, R, C, (_r, e) => e, C, w, b, eps, g);
}

type Ref = ReturnType<typeof refLayerNorm>;

/** Inputs x, weight, bias with the given gradient flags; the weight may be f16 storage (values rounded as stored). */
function normInputs(xShape: number[], C: number, o: { xData?: ArrayLike<number>; grads: [boolean, boolean, boolean]; f16Weight?: boolean }): OpInput[] {
  const w = Array.from(randomArray(C, 77, 0.5, 1.5));
  return [
    { shape: xShape, data: o.xData, grad: o.grads[0] },
    { shape: [C], data: o.f16Weight ? w : undefined, dtype: o.f16Weight ? 'f16' : 'f32', grad: o.grads[1] },
    { shape: [C], grad: o.grads[2] },
  ];
}

/** The reference's forward and VJP in checkOp's form (weight values rounded to f16 when stored so). */
function refCheck(ref: Ref, f16Weight = false) {
  const wOf = (w: Float64Array) => (f16Weight ? Float64Array.from(roundF16(w)) : w);
  return {
    reference: ([x, w, b]: Float64Array[]) => ref(x!, wOf(w!), b!).y,
    referenceGrad: ([x, w, b]: Float64Array[], g: Float64Array) => {
      const r = ref(x!, wOf(w!), b!, g);
      return [r.dx, r.dw, r.db];
    },
  };
}

// Forward: f32 kernels against float64, about 1e-6 relative in practice.
const TOL = { atol: 1e-5, rtol: 1e-4 };
// Central differences of an f32 forward with step 1e-3: the noise is about 1e-7 / 1e-3 per output.
const FD = { eps: 1e-3, tol: { atol: 2e-3, rtol: 3e-2 } };

/** Group norm (optionally with its fused SiLU) on an [N, C, ...spatial] input against the float64 reference and finite differences. */
async function checkGroupNorm(shape: number[], G: number, silu: boolean): Promise<void> {
  const [N, C] = shape as [number, number];
  const S = shape.slice(2).reduce((a, d) => a * d, 1);
  await checkOp(await testBackend(), {
    inputs: normInputs(shape, C, { grads: [true, true, true] }),
    forward: ([x, w, b]) => groupNorm(x!, G, w!, b!, 1e-5, silu ? { activation: 'silu' } : undefined),
    ...refCheck(refGroupNorm(N, C, G, S, 1e-5, silu)),
    tol: TOL,
    fd: FD,
  });
}

describe('groupNorm', () => {
  const cases: [string, number[], number][] = [
    // S = 35 >= CHANNEL_MAJOR_MIN_S: dweight/dbias by one workgroup per channel
    ['N=2 C=6 groups=3, 5x7 spatial', [2, 6, 5, 7], 3],
    // no spatial dims (S = 1): the column kernel, one chunk
    ['N=3 C=4 groups=2, no spatial', [3, 4], 2],
    // S = 6 < 32: column kernel, partial sums reduced over S
    ['N=2 C=4 groups=2, 2x3 spatial', [2, 4, 2, 3], 2],
    // three spatial dims
    ['N=2 C=4 groups=4, 3x2x2 spatial', [2, 4, 3, 2, 2], 4],
  ];
  for (const [name, shape, G] of cases) it(name, () => checkGroupNorm(shape, G, false));

  it('rows longer than the lanes (E = 576), frozen f16 weight, trainable bias', async () => {
    await checkOp(await testBackend(), {
      inputs: normInputs([1, 4, 12, 12], 4, { grads: [true, false, true], f16Weight: true }),
      forward: ([x, w, b]) => groupNorm(x!, 1, w!, b!, 1e-6),
      ...refCheck(refGroupNorm(1, 4, 1, 144, 1e-6), true),
      tol: TOL,
      fd: FD,
    });
  });

  it('without weight or bias', async () => {
    const ref = refGroupNorm(2, 6, 2, 4, 1e-5);
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 6, 4], grad: true }],
      forward: ([x]) => groupNorm(x!, 2, undefined, null, 1e-5),
      reference: ([x]) => ref(x!, null, null).y,
      referenceGrad: ([x], g) => [ref(x!, null, null, g).dx],
      tol: TOL,
      fd: FD,
    });
  });

  it("adds x's gradient from its other use (a residual) as dx is written: no add dispatch, same gradient", async () => {
    const ref = refGroupNorm(2, 6, 2, 4, 1e-5);
    // x2 = 2x feeds the norm and, after it, a residual add: the add's gradient reaches x2 first, the norm folds it in.
    const f = (x: Tensor) => {
      const x2 = scale(x, 2);
      return add(groupNorm(x2, 2, undefined, null, 1e-5), x2);
    };
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 6, 4], grad: true }],
      forward: ([x]) => f(x!),
      reference: ([x]) => {
        const x2 = x!.map((v) => 2 * v);
        return ref(x2, null, null).y.map((v, i) => v + x2[i]!);
      },
      referenceGrad: ([x], g) => [ref(x!.map((v) => 2 * v), null, null, g).dx.map((v, i) => 2 * (v + g[i]!))],
      tol: TOL,
      fd: FD,
    });
    const meta = new MetaBackend();
    const x = param(meta, [], [2, 6, 4]);
    const y = scope(() => f(x));
    meta.resetStats();
    backward(y, empty(meta, [2, 6, 4]));
    const k = (n: string) => meta.stats.byKernel.get(n)?.dispatches ?? 0;
    expect([k('norm_dx'), k('add')]).toEqual([1, 0]);
    for (const t of [x, y]) t.dispose();
  });

  it('a gradient with its prior folded in is handed on unchanged as a plain one: later sums keep every term', async () => {
    const ref = refGroupNorm(2, 6, 2, 4, 1e-5);
    // b feeds c = b + k (the norm's input, also a residual) and, last, an add: c's gradient (prior folded by the norm)
    // reaches b unchanged through c's add, where the last add's gradient is already waiting.
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 6, 4], grad: true }, { shape: [2, 6, 4], grad: false }],
      forward: ([x, k]) => {
        const b = scale(x!, 2);
        const c = add(b, k!);
        return add(add(groupNorm(c, 2, undefined, null, 1e-5), c), b);
      },
      reference: ([x, k]) => {
        const b = x!.map((v) => 2 * v);
        const c = b.map((v, i) => v + k![i]!);
        return ref(c, null, null).y.map((v, i) => v + c[i]! + b[i]!);
      },
      referenceGrad: ([x, k], g) => [ref(x!.map((v, i) => 2 * v + k![i]!), null, null, g).dx.map((v, i) => 2 * (v + 2 * g[i]!)), null],
      tol: TOL,
      fd: FD,
    });
  });

  it('a large mean does not cancel (values 1000 ± 1), forward and backward, f16 weight', async () => {
    const shape = [2, 4, 4, 4];
    const xData = Array.from(randomArray(128, 9), (v) => Math.fround(1000 + v));
    const ref = refGroupNorm(2, 4, 2, 16, 1e-6);
    // Show the test can tell: a one-pass f32 variance E[x²] − E[x]² of the first group is far off.
    let s = 0, s2 = 0;
    for (let i = 0; i < 32; i++) {
      s = Math.fround(s + xData[i]!);
      s2 = Math.fround(s2 + Math.fround(xData[i]! * xData[i]!));
    }
    const naiveVar = Math.fround(s2 / 32 - Math.fround(s / 32) ** 2);
    const exactVar = variance(xData.slice(0, 32));
    expect(Math.abs(naiveVar - exactVar) / exactVar).toBeGreaterThan(0.05);
    await checkOp(await testBackend(), {
      inputs: normInputs(shape, 4, { xData, grads: [true, true, false], f16Weight: true }),
      forward: ([x, w, b]) => groupNorm(x!, 2, w!, b!, 1e-6),
      ...refCheck(ref, true),
      // inputs are exact f32 values; f32 holds 1000 ± 1 to 6e-5, so about 1e-4 of a unit-variance output
      tol: { atol: 5e-4, rtol: 5e-4 },
      // the step must move 1000-ish values well beyond their f32 spacing (6e-5): 3e-2, looser tolerance
      fd: { eps: 3e-2, tol: { atol: 1e-2, rtol: 5e-2 } },
    });
  });

  it('rejects channels that do not split into groups, and mismatched weights', async () => {
    const b = await testBackend();
    const x = tensor(b, new Float32Array(12), [2, 6]);
    const w = tensor(b, new Float32Array(5), [5]);
    expect(() => groupNorm(x, 4, undefined, undefined, 1e-5)).toThrow(/do not split into 4 groups/);
    expect(() => groupNorm(x, 3, w, undefined, 1e-5)).toThrow(/weight of shape \[5\] for 6 channels/);
    x.dispose();
    w.dispose();
  });
});

describe('groupNorm with a fused SiLU', () => {
  const silu = { activation: 'silu' } as const;
  const cases: [string, number[], number][] = [
    // S = 35: weight/bias gradients by one workgroup per channel, recomputing z there
    ['N=2 C=6 groups=3, 5x7 spatial', [2, 6, 5, 7], 3],
    // S = 6 < 32: the column kernel, partial sums reduced over S
    ['N=2 C=4 groups=2, 2x3 spatial', [2, 4, 2, 3], 2],
    // no spatial dims: the column kernel, one chunk, no reduce
    ['N=3 C=4 groups=2, no spatial', [3, 4], 2],
  ];
  for (const [name, shape, G] of cases) it(name, () => checkGroupNorm(shape, G, true));

  it('E = 576 per row, frozen f16 weight, trainable bias: the SD ResNet case', async () => {
    await checkOp(await testBackend(), {
      inputs: normInputs([1, 4, 12, 12], 4, { grads: [true, false, true], f16Weight: true }),
      forward: ([x, w, b]) => groupNorm(x!, 1, w!, b!, 1e-6, silu),
      ...refCheck(refGroupNorm(1, 4, 1, 144, 1e-6, true), true),
      tol: TOL,
      fd: FD,
    });
  });

  it('frozen weight and bias, dx only (no parameter gradient kernel)', async () => {
    await checkOp(await testBackend(), {
      inputs: normInputs([2, 8, 6, 6], 8, { grads: [true, false, false] }),
      forward: ([x, w, b]) => groupNorm(x!, 4, w!, b!, 1e-5, silu),
      ...refCheck(refGroupNorm(2, 8, 4, 36, 1e-5, true)),
      tol: TOL,
      fd: FD,
    });
  });

  it('bias without weight', async () => {
    const ref = refGroupNorm(2, 6, 2, 4, 1e-5, true);
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 6, 4], grad: true }, { shape: [6], grad: true }],
      forward: ([x, b]) => groupNorm(x!, 2, undefined, b!, 1e-5, silu),
      reference: ([x, b]) => ref(x!, null, b!).y,
      referenceGrad: ([x, b], g) => {
        const r = ref(x!, null, b!, g);
        return [r.dx, r.db];
      },
      tol: TOL,
      fd: FD,
    });
  });

  it('without weight or bias', async () => {
    const ref = refGroupNorm(2, 6, 2, 4, 1e-5, true);
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 6, 4], grad: true }],
      forward: ([x]) => groupNorm(x!, 2, undefined, null, 1e-5, silu),
      reference: ([x]) => ref(x!, null, null).y,
      referenceGrad: ([x], g) => [ref(x!, null, null, g).dx],
      tol: TOL,
      fd: FD,
    });
  });
});

function variance(v: number[]): number {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  return v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length;
}

describe('layerNorm', () => {
  it('[2, 3, 10] with weight and bias', async () => {
    await checkOp(await testBackend(), {
      inputs: normInputs([2, 3, 10], 10, { grads: [true, true, true] }),
      forward: ([x, w, b]) => layerNorm(x!, w!, b!),
      ...refCheck(refLayerNorm(6, 10, 1e-5)),
      tol: TOL,
      fd: FD,
    });
  });

  it('[150, 8]: parameter gradients in three row chunks', async () => {
    await checkOp(await testBackend(), {
      inputs: normInputs([150, 8], 8, { grads: [true, true, true] }),
      forward: ([x, w, b]) => layerNorm(x!, w!, b!),
      ...refCheck(refLayerNorm(150, 8, 1e-5)),
      tol: TOL,
      fd: FD,
    });
  });

  it('C = 300 (rows longer than the lanes), frozen f16 weight, no bias', async () => {
    const ref = refLayerNorm(3, 300, 1e-5);
    await checkOp(await testBackend(), {
      inputs: normInputs([3, 300], 300, { grads: [true, false, false], f16Weight: true }).slice(0, 2),
      forward: ([x, w]) => layerNorm(x!, w!, undefined),
      reference: ([x, w]) => ref(x!, Float64Array.from(roundF16(w!)), null).y,
      referenceGrad: ([x, w], g) => [ref(x!, Float64Array.from(roundF16(w!)), null, g).dx, null],
      tol: TOL,
      fd: FD,
    });
  });

  it('a large mean does not cancel (values 1000 ± 1, C = 300), forward', async () => {
    const xData = Array.from(randomArray(3 * 300, 5), (v) => Math.fround(1000 + v));
    const ref = refLayerNorm(3, 300, 1e-5);
    await checkOp(await testBackend(), {
      inputs: normInputs([3, 300], 300, { xData, grads: [false, false, false] }),
      forward: ([x, w, b]) => layerNorm(x!, w!, b!),
      reference: ([x, w, b]) => ref(x!, w!, b!).y,
      // as for group norm: about 1e-4 of a unit-variance output is what f32 inputs near 1000 allow
      tol: { atol: 5e-4, rtol: 5e-4 },
    });
  });
});

describe('norm pipelines', () => {
  it('another resolution, channel count or group count (same lanes per row) reuses every pipeline', async () => {
    const b = await testBackend();
    // E = 128 and 64 (32 lanes per row), S = 64 and 32 (one workgroup per channel for dw, db)
    await checkGroupNorm([1, 4, 8, 8], 2, true);
    expect(await pipelinesCompiledBy(b, () => checkGroupNorm([2, 6, 8, 4], 3, true))).toBe(0);
    const ln = (R: number, C: number) => checkOp(b, { inputs: normInputs([R, C], C, { grads: [true, false, false] }), forward: ([x, w, bb]) => layerNorm(x!, w!, bb!), ...refCheck(refLayerNorm(R, C, 1e-5)), tol: TOL, fd: FD });
    await ln(3, 10);
    expect(await pipelinesCompiledBy(b, () => ln(7, 24))).toBe(0);
  });
});

describe('norms on the meta device', () => {
  /** Run the recorded norm's backward rule on `g` and return the bytes it allocated at its peak. */
  function rulePeak(meta: MetaBackend, y: Tensor, needs: boolean[]): { peak: number; grads: (number[] | null)[] } {
    const node = y.node as TapeNode<'norm'>;
    const g = empty(meta, y.shape);
    meta.resetPeak();
    const live = meta.pool().liveBytes;
    const grads = scope(() => normRules.norm(node.saved, [g], needs).map((t) => (t ? [...t.shape] : null)));
    const peak = meta.pool().peakLiveBytes - live;
    g.dispose();
    discardTape();
    return { peak, grads };
  }

  it('SD-sized group norm: counts, and backward allocates dx, dw, db only', () => {
    const meta = new MetaBackend();
    // [2, 320, 64, 64] in 32 groups: D = 40960 elements per group
    const x = param(meta, [], [2, 320, 64, 64]);
    const w = param(meta, [], [320]);
    const y = groupNorm(x, 32, w, undefined, 1e-5);
    expect(meta.stats.byKernel.get('group_norm')).toEqual({ dispatches: 1, flops: 10 * x.size, bytes: 8 * x.size + 4 * 320 + 8 * 64 });
    const { peak, grads } = rulePeak(meta, y, [true, true, false]);
    expect(grads).toEqual([[2, 320, 64, 64], [320], null]);
    expect(peak).toBe(sizeClass(x.bytes) + 2 * sizeClass(4 * 320));
    expect(meta.stats.byKernel.get('norm_dx')?.dispatches).toBe(1);
    expect(meta.stats.byKernel.get('norm_dw')?.dispatches).toBe(1);
    for (const t of [x, w, y]) t.dispose();
    expect(meta.pool().liveBytes).toBe(0);
  });

  it('SD-sized group norm + SiLU: one dispatch forward, dx and dw backward, nothing for the SiLU', () => {
    const meta = new MetaBackend();
    const x = param(meta, [], [1, 320, 32, 32]);
    const w = param(meta, [], [320]);
    const b = param(meta, [], [320]);
    const y = groupNorm(x, 32, w, b, 1e-5, { activation: 'silu' });
    expect([...meta.stats.byKernel.keys()]).toEqual(['group_norm_silu']);
    expect(meta.stats.dispatches).toBe(1);
    // saved: x, w, b and the [32, 2] stats (retained, not copied): backward allocates dx, dw, db only
    const node = y.node as TapeNode<'norm'>;
    expect(node.held.map((t) => [...t.shape])).toEqual([[1, 320, 32, 32], [320], [320], [32, 2]]);
    const { peak, grads } = rulePeak(meta, y, [true, true, true]);
    expect(grads).toEqual([[1, 320, 32, 32], [320], [320]]);
    expect(peak).toBe(sizeClass(x.bytes) + 2 * sizeClass(4 * 320));
    expect(meta.stats.dispatches).toBe(3);
    expect(meta.stats.byKernel.get('norm_dx')?.dispatches).toBe(1);
    expect(meta.stats.byKernel.get('norm_dw')?.dispatches).toBe(1);
    for (const t of [x, w, b, y]) t.dispose();
    expect(meta.pool().liveBytes).toBe(0);
  });

  it('SD-sized layer norm: weight gradients through at most 64 partial rows', () => {
    const meta = new MetaBackend();
    const x = param(meta, [], [8192, 320]);
    const w = param(meta, [], [320]);
    const b = param(meta, [], [320]);
    const y = layerNorm(x, w, b);
    const { peak, grads } = rulePeak(meta, y, [true, true, true]);
    expect(grads).toEqual([[8192, 320], [320], [320]]);
    // dx, two [64, 320] partial sums, the two [320] gradients
    expect(peak).toBe(sizeClass(x.bytes) + 2 * sizeClass(64 * 320 * 4) + 2 * sizeClass(4 * 320));
    expect(meta.stats.byKernel.get('reduce')?.dispatches).toBe(2);
    for (const t of [x, w, b, y]) t.dispose();
    expect(meta.pool().liveBytes).toBe(0);
  });
});

describe('groupNorm statistics', () => {
  it('matches float64 on a long group (E = 4096 per row), no affine', async () => {
    const b = await testBackend();
    const data = randomArray(2 * 8 * 512, 3, -3, 5);
    const x = tensor(b, data, [2, 8, 512]);
    const y = groupNorm(x, 2, undefined, undefined, 1e-5);
    const got = await y.read();
    const want = refGroupNorm(2, 8, 2, 512, 1e-5)(data, null, null).y;
    assertClose(got, want, { atol: 1e-5, rtol: 1e-4 }, 'group norm E=4096');
    x.dispose();
    y.dispose();
  });
});
