// conv2d as implicit GEMM: forward and every gradient against a reference and central differences, split-K, f16 weights, epilogue residuals and shared sources.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../backend.js';
import { sizeClass } from '../pool.js';
import { roundF16 } from '../dtype.js';
import { backward } from '../grad.js';
import { assertClose, randomArray } from '../testing/allclose.js';
import { testBackend } from '../testing/gpu.js';
import { checkOp } from '../testing/opcheck.js';
import { refConv, refConvGrad, refConvOut, type RefConv } from '../testing/ref.js';
import { empty, scope, tensor } from '../tensor.js';
import { convGemmKernel, dxPhases, splitK, splitSumKernel, convGemmShape, withSplits, type ConvPass } from '../kernels/conv2d.js';
import { conv2d, conv2dInto, conv2dNaive, convGeometry, upsampleNearest2x } from './conv.js';

// f32 sums of at most a few hundred products of values in [-1, 1): 1e-4 leaves a wide margin.
const TOL = { atol: 1e-4, rtol: 1e-4 };

const grads = (c: RefConv) => ([x, w]: Float64Array[], g: Float64Array) => refConvGrad(x!, w!, g, c);

const configs: [string, RefConv][] = [
  ['1x1', { N: 2, C: 5, H: 6, W: 6, O: 7, k: 1, stride: 1, pad: [0, 0, 0, 0] }],
  ['1x1 stride 2 (dX phases no tap reaches)', { N: 1, C: 5, H: 5, W: 6, O: 7, k: 1, stride: 2, pad: [0, 0, 0, 0] }],
  ['3x3 stride 1 pad 1', { N: 2, C: 5, H: 6, W: 6, O: 7, k: 3, stride: 1, pad: [1, 1, 1, 1] }],
  ['3x3 stride 1 no padding', { N: 1, C: 5, H: 6, W: 5, O: 7, k: 3, stride: 1, pad: [0, 0, 0, 0] }],
  ['3x3 stride 2 pad 1, odd height', { N: 2, C: 5, H: 7, W: 6, O: 7, k: 3, stride: 2, pad: [1, 1, 1, 1] }],
  // Odd height: the bottom pad row is never reached; even width: the right one is.
  ['3x3 stride 2 asymmetric [0, 1, 0, 1] (VAE encoder)', { N: 2, C: 5, H: 7, W: 6, O: 7, k: 3, stride: 2, pad: [0, 1, 0, 1] }],
];

const inputsOf = (c: RefConv) => [
  { shape: [c.N, c.C, c.H, c.W], grad: true },
  { shape: [c.O, c.C, c.k, c.k], grad: true },
  { shape: [c.O], grad: true },
];

describe('conv2d (implicit GEMM)', () => {
  for (const [name, c] of configs) {
    it(`${name}: forward, and gradients of x, w, bias vs reference and central differences`, async () => {
      await checkOp(await testBackend(), {
        inputs: inputsOf(c),
        forward: ([x, w, b]) => conv2d(x!, w!, b!, { stride: c.stride, padding: c.pad }),
        reference: ([x, w, b]) => refConv(x!, w!, b!, c),
        referenceGrad: grads(c),
        tol: TOL,
      });
    });
  }

  it('split-K (few tiles, long reductions) in forward with bias, dX and dW', async () => {
    // Every GEMM here is one tile with K = 288, so each runs as two K slices plus a split-sum pass.
    const c: RefConv = { N: 2, C: 32, H: 12, W: 12, O: 32, k: 3, stride: 1, pad: [1, 1, 1, 1] };
    await checkOp(await testBackend(), {
      inputs: inputsOf(c),
      forward: ([x, w, b]) => conv2d(x!, w!, b!, { padding: 1 }),
      reference: ([x, w, b]) => refConv(x!, w!, b!, c),
      referenceGrad: grads(c),
      tol: { atol: 3e-4, rtol: 1e-4 },
    });
  });

  it('split-K over stride-2 dX phases with unequal tap counts', async () => {
    const c: RefConv = { N: 1, C: 6, H: 9, W: 8, O: 64, k: 3, stride: 2, pad: [1, 1, 1, 1] };
    await checkOp(await testBackend(), {
      inputs: [{ shape: [c.N, c.C, c.H, c.W], grad: true }, { shape: [c.O, c.C, 3, 3] }],
      forward: ([x, w]) => conv2d(x!, w!, undefined, { stride: 2, padding: 1 }),
      reference: ([x, w]) => refConv(x!, w!, null, c),
      referenceGrad: ([x, w], g) => [refConvGrad(x!, w!, g, c)[0], null],
      tol: { atol: 3e-4, rtol: 1e-4 },
    });
  });

  it('f16-stored frozen weight: forward and dX', async () => {
    const c: RefConv = { N: 2, C: 5, H: 6, W: 6, O: 7, k: 3, stride: 1, pad: [1, 1, 1, 1] };
    const w = randomArray(c.O * c.C * 9, 77);
    const w16 = Float64Array.from(roundF16(w));
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 5, 6, 6], grad: true }, { shape: [7, 5, 3, 3], data: w, dtype: 'f16' }, { shape: [7] }],
      forward: ([x, ww, b]) => conv2d(x!, ww!, b!, { padding: 1 }),
      reference: ([x, _w, b]) => refConv(x!, w16, b!, c),
      referenceGrad: ([x], g) => [refConvGrad(x!, w16, g, c)[0], null, null],
      tol: TOL,
    });
  });

  it('naive kernel agrees with the reference', async () => {
    for (const [, c] of [configs[2]!, configs[5]!]) {
      await checkOp(await testBackend(), {
        inputs: [{ shape: [c.N, c.C, c.H, c.W] }, { shape: [c.O, c.C, c.k, c.k] }, { shape: [c.O] }],
        forward: ([x, w, b]) => conv2dNaive(x!, w!, b!, { stride: c.stride, padding: c.pad }),
        reference: ([x, w, b]) => refConv(x!, w!, b!, c),
        tol: TOL,
      });
    }
  });

  it('frozen weight: backward runs only dX and keeps no activation (meta device)', () => {
    const meta = new MetaBackend();
    const x = empty(meta, [1, 320, 64, 64]);
    const w = empty(meta, [320, 320, 3, 3], 'f16');
    x.requiresGrad = true;
    meta.resetStats();
    meta.resetPeak();
    const y = scope(() => conv2d(x, w, undefined, { padding: 1 }));
    const seed = empty(meta, y.shape);
    backward(y, seed);
    // (backward's own 'copy' moves dX into x.grad)
    expect([...meta.stats.byKernel.keys()].filter((k) => k !== 'copy')).toEqual(['conv2d', 'conv2d_dx']);
    expect(meta.stats.byKernel.get('conv2d')!.flops + meta.stats.byKernel.get('conv2d_dx')!.flops).toBe(2 * (2 * 4096 * 320 * 2880));
    // Peak is x, w, y, dY, dX and the copy backward makes of dX for x.grad: no conv workspace at all,
    // let alone an im2col buffer (4096 x 2880 floats, 45 MiB).
    const needed = [x, w, y, seed, x.grad!, x.grad!].reduce((a, t) => a + t.storage.bytes, 0);
    expect(meta.pool().peakLiveBytes).toBeLessThanOrEqual(needed);
    for (const t of [x, w, y, seed]) t.dispose();
  });

  it('trainable weight and bias: dW and dBias, no im2col buffer (meta device)', () => {
    const meta = new MetaBackend();
    const x = empty(meta, [2, 64, 32, 32]);
    const w = empty(meta, [4, 64, 3, 3]);
    const b = empty(meta, [4]);
    w.requiresGrad = true;
    b.requiresGrad = true;
    meta.resetStats();
    meta.resetPeak();
    const y = scope(() => conv2d(x, w, b, { stride: 2, padding: [0, 1, 0, 1] }));
    expect(y.shape).toEqual([2, 4, 16, 16]);
    const seed = empty(meta, y.shape);
    backward(y, seed);
    // dW of a rank-4 LoRA-like conv is 9 tiles with K = 512 output pixels: split into 4 K slices.
    const kernels = [...meta.stats.byKernel.keys()].filter((k) => k !== 'copy');
    expect(kernels.sort()).toEqual(['conv2d', 'conv2d_dw', 'conv2d_splitsum', 'reduce']);
    expect(w.grad?.shape).toEqual([4, 64, 3, 3]);
    expect(b.grad?.shape).toEqual([4]);
    const needed = [x, w, b, y, seed, w.grad!, b.grad!].reduce((a, t) => a + t.storage.bytes, 0);
    // Beyond those, only the 4 slices of dW (36 KiB, in a 64 KiB pool class).
    expect(meta.pool().peakLiveBytes - needed).toBeLessThanOrEqual(sizeClass(4 * 4 * 64 * 9 * 4));
    for (const t of [x, w, b, y, seed]) t.dispose();
  });

  // Unsplit (the GEMM's epilogue adds bias and residual) and split-K (the split-sum does).
  const residualCases: [string, RefConv][] = [
    ['unsplit', configs[4]![1]],
    ['split-K', { N: 2, C: 32, H: 12, W: 12, O: 32, k: 3, stride: 1, pad: [1, 1, 1, 1] }],
  ];
  for (const [name, c] of residualCases) {
    it(`residual in the epilogue, ${name}: forward and all gradients (the residual's is the output's)`, async () => {
      const [OH, OW] = refConvOut(c);
      await checkOp(await testBackend(), {
        inputs: [...inputsOf(c), { shape: [c.N, c.O, OH, OW], grad: true }],
        forward: ([x, w, b, r]) => conv2d(x!, w!, b!, { stride: c.stride, padding: c.pad, residual: r! }),
        reference: ([x, w, b, r]) => refConv(x!, w!, b!, c).map((v, i) => v + r![i]!),
        referenceGrad: ([x, w], g) => [...refConvGrad(x!, w!, g, c), g],
        tol: { atol: 3e-4, rtol: 1e-4 },
      });
    });

    it(`conv2dInto adds into an existing tensor, ${name}`, async () => {
      const be = await testBackend();
      const [OH, OW] = refConvOut(c);
      const xs = randomArray(c.N * c.C * c.H * c.W, 61), ws = randomArray(c.O * c.C * c.k * c.k, 62), o0 = randomArray(c.N * c.O * OH * OW, 63);
      const [x, w, out] = [tensor(be, xs, [c.N, c.C, c.H, c.W]), tensor(be, ws, [c.O, c.C, c.k, c.k]), tensor(be, o0, [c.N, c.O, OH, OW])];
      conv2dInto(out, x, w, { stride: c.stride, padding: c.pad });
      assertClose(await out.read(), refConv(xs, ws, null, c).map((v, i) => v + o0[i]!), { atol: 3e-4, rtol: 1e-4 }, 'conv2dInto');
      for (const t of [x, w, out]) t.dispose();
    });
  }

  it('sizes are uniforms: every 3x3 conv of a pass shares one source, whatever its geometry, stride, split or dX phase', () => {
    const dt = { x: 'f32', w: 'f16', g: 'f32', bias: null } as const;
    const src = (xs: number[], ws: number[], pass: (g: ReturnType<typeof convGeometry>) => ConvPass, opts = {}) => {
      const g = convGeometry(xs, ws, opts);
      const p = pass(g);
      const { M, N, K } = convGemmShape(g, p);
      return convGemmKernel({ g, pass: p, dt, split: splitK(M, N, K) }).source();
    };
    const fwd = () => ({ kind: 'forward' }) as const;
    const a = src([1, 320, 64, 64], [320, 320, 3, 3], fwd, { padding: 1 });
    expect(src([2, 1280, 8, 8], [1280, 1280, 3, 3], fwd, { padding: 1 })).toBe(a); // split-K
    expect(src([1, 640, 33, 17], [320, 640, 3, 3], fwd, { stride: 2, padding: [0, 1, 0, 1] })).toBe(a);
    expect(src([1, 320, 64, 64], [320, 320, 1, 1], fwd)).not.toBe(a); // the kernel size stays in the source
    const phases = dxPhases(convGeometry([1, 64, 9, 8], [32, 64, 3, 3], { stride: 2, padding: 1 }));
    const dx = phases.map((ph) => src([1, 64, 9, 8], [32, 64, 3, 3], () => ph, { stride: 2, padding: 1 }));
    expect(new Set([...dx, src([1, 320, 16, 16], [320, 320, 3, 3], (g) => dxPhases(g)[0]!, { padding: 1 })]).size).toBe(1);
  });

  it('with shader-f16, an f16 weight is read as array<f16>; f32-only passes keep one source', () => {
    const g = convGeometry([1, 8, 6, 6], [4, 8, 3, 3], { padding: 1 });
    const split = splitK(36, 4, 72);
    const k = (w: 'f16' | 'f32', f16: boolean, pass: ConvPass = { kind: 'forward' }) => convGemmKernel({ g, pass, dt: { x: 'f32', w, g: 'f32', bias: null }, split, f16 }).source();
    expect(k('f16', true)).toMatch(/^enable f16;[^]*w: array<f16>/);
    expect(k('f16', false)).not.toMatch(/f16;/);
    expect(k('f32', true)).toBe(k('f32', false));
    expect(k('f16', true, { kind: 'dw' })).toBe(k('f16', false, { kind: 'dw' })); // dW reads g and x, not w
  });

  it('both tiles give the reference forward and dX (stride 2, asymmetric padding, split K)', async () => {
    const be = await testBackend();
    const c: RefConv = { N: 2, C: 24, H: 9, W: 8, O: 40, k: 3, stride: 2, pad: [0, 1, 0, 1] };
    const g = convGeometry([c.N, c.C, c.H, c.W], [c.O, c.C, 3, 3], { stride: 2, padding: c.pad });
    const [OH, OW] = refConvOut(c);
    const xs = randomArray(c.N * c.C * c.H * c.W, 65), ws = randomArray(c.O * c.C * 9, 66), gs = randomArray(c.N * c.O * OH * OW, 67);
    const [x, w, gy] = [tensor(be, xs, [c.N, c.C, c.H, c.W]), tensor(be, ws, [c.O, c.C, 3, 3]), tensor(be, gs, [c.N, c.O, OH, OW])];
    const dt = { x: 'f32', w: 'f32', g: 'f32', bias: null } as const;
    const tol = { atol: 3e-4, rtol: 1e-4 };
    for (const tile of [64, 32] as const) {
      // Forward through 2 K slices and the split-sum.
      const fs = convGemmShape(g, { kind: 'forward' });
      const fwd = { splits: 2, chunk: Math.ceil(fs.K / 2 / 16) * 16 };
      const [fws, y] = [empty(be, [2, c.N * c.O * OH * OW]), empty(be, [c.N, c.O, OH, OW])];
      const k = convGemmKernel({ g, pass: { kind: 'forward' }, dt, split: fwd, tile });
      expect(k.source()).toContain(`@workgroup_size(${tile / 4}, ${tile / 4})`);
      expect(k.workgroups[0]).toBe(Math.ceil(fs.M / tile) * Math.ceil(fs.N / tile) * 2);
      be.run(k, [x, w, fws].map((t) => t.binding()));
      be.run(splitSumKernel({ size: y.size, splits: 2, bias: null, plane: 1, channels: 1 }), [fws, y].map((t) => t.binding()));
      assertClose(await y.read(), refConv(xs, ws, null, c), tol, `forward, tile ${tile}`);
      // dX: every stride phase, unsplit, into one tensor.
      const dx = empty(be, [c.N, c.C, c.H, c.W]);
      for (const ph of dxPhases(g)) be.run(convGemmKernel({ g, pass: ph, dt, split: withSplits(convGemmShape(g, ph).K, 1), tile }), [gy, w, dx].map((t) => t.binding()));
      assertClose(await dx.read(), refConvGrad(xs, ws, gs, c)[0], tol, `dX, tile ${tile}`);
      for (const t of [fws, y, dx]) t.dispose();
    }
    for (const t of [x, w, gy]) t.dispose();
  });

  it('rejects mismatched shapes', async () => {
    const be = await testBackend();
    const x = empty(be, [1, 3, 4, 4]);
    const w = empty(be, [2, 4, 3, 3]);
    expect(() => conv2d(x, w)).toThrow(/3 channels/);
    x.dispose();
    w.dispose();
  });
});

describe('upsampleNearest2x', () => {
  it('forward and backward (2x2 block sums)', async () => {
    const [N, C, H, W] = [2, 3, 3, 5];
    const src = (i: number) => {
      const p = Math.floor(i / (4 * H * W)), r = i % (4 * H * W);
      return p * H * W + Math.floor(Math.floor(r / (2 * W)) / 2) * W + Math.floor((r % (2 * W)) / 2);
    };
    await checkOp(await testBackend(), {
      inputs: [{ shape: [N, C, H, W], grad: true }],
      forward: ([x]) => upsampleNearest2x(x!),
      reference: ([x]) => Float64Array.from({ length: N * C * 4 * H * W }, (_, i) => x![src(i)]!),
      referenceGrad: (_x, g) => {
        const d = new Float64Array(N * C * H * W);
        g.forEach((v, i) => (d[src(i)] = d[src(i)]! + v));
        return [d];
      },
      tol: { atol: 1e-6, rtol: 1e-6 },
    });
  });
});
