import { describe, it } from 'vitest';
import { roundF16 } from '../dtype.js';
import { checkOp } from '../testing/opcheck.js';
import { testBackend } from '../testing/gpu.js';
import { randomArray } from '../testing/allclose.js';
import { refConv, refConvGrad, refConvOut, type RefConv } from '../testing/ref.js';
import { conv2d, conv2dNaive, upsampleNearest2x } from './conv.js';

const TOL = { atol: 1e-4, rtol: 1e-4 };

const configs: [string, RefConv][] = [
  ['1x1', { N: 2, C: 5, H: 6, W: 5, O: 7, k: 1, stride: 1, pad: [0, 0, 0, 0] }],
  ['3x3 stride 1 pad 1', { N: 2, C: 5, H: 6, W: 6, O: 7, k: 3, stride: 1, pad: [1, 1, 1, 1] }],
  ['3x3 stride 2 pad 1', { N: 2, C: 3, H: 7, W: 6, O: 4, k: 3, stride: 2, pad: [1, 1, 1, 1] }],
  ['3x3 stride 2 asymmetric (VAE)', { N: 1, C: 4, H: 8, W: 8, O: 5, k: 3, stride: 2, pad: [0, 1, 0, 1] }],
];

describe('conv2d (implicit GEMM)', () => {
  for (const [name, c] of configs) {
    it(`${name}: forward and gradients of x, w, bias`, async () => {
      const [OH, OW] = refConvOut(c);
      await checkOp(await testBackend(), {
        inputs: [
          { shape: [c.N, c.C, c.H, c.W], grad: true },
          { shape: [c.O, c.C, c.k, c.k], grad: true },
          { shape: [c.O], grad: true },
        ],
        forward: ([x, w, b]) => conv2d(x!, w!, b!, { stride: c.stride, padding: c.pad }),
        reference: ([x, w, b]) => refConv(x!, w!, b!, c),
        referenceGrad: ([x, w], g) => refConvGrad(x!, w!, g, c),
        tol: TOL,
      });
      void OH;
      void OW;
    });
  }

  it('f16 weight, no bias', async () => {
    const c: RefConv = { N: 1, C: 6, H: 5, W: 5, O: 3, k: 3, stride: 1, pad: [1, 1, 1, 1] };
    const w = randomArray(c.O * c.C * 9, 77);
    const w16 = Float64Array.from(roundF16(w));
    await checkOp(await testBackend(), {
      inputs: [{ shape: [1, 6, 5, 5], grad: true }, { shape: [3, 6, 3, 3], data: w, dtype: 'f16' }],
      forward: ([x, ww]) => conv2d(x!, ww!, undefined, { padding: 1 }),
      reference: ([x]) => refConv(x!, w16, null, c),
      referenceGrad: ([x], g) => [refConvGrad(x!, w16, g, c)[0], null],
      tol: TOL,
    });
  });

  it('naive kernel agrees', async () => {
    const c = configs[2]![1];
    await checkOp(await testBackend(), {
      inputs: [{ shape: [c.N, c.C, c.H, c.W] }, { shape: [c.O, c.C, 3, 3] }, { shape: [c.O] }],
      forward: ([x, w, b]) => conv2dNaive(x!, w!, b!, { stride: 2, padding: 1 }),
      reference: ([x, w, b]) => refConv(x!, w!, b!, c),
      tol: TOL,
    });
  });
});

describe('upsampleNearest2x', () => {
  it('forward and backward', async () => {
    const [N, C, H, W] = [2, 3, 3, 4];
    await checkOp(await testBackend(), {
      inputs: [{ shape: [N, C, H, W], grad: true }],
      forward: ([x]) => upsampleNearest2x(x!),
      reference: ([x]) => Float64Array.from({ length: N * C * 4 * H * W }, (_, i) => {
        const p = Math.floor(i / (4 * H * W)), r = i % (4 * H * W), h = Math.floor(r / (2 * W)), w = r % (2 * W);
        return x![p * H * W + Math.floor(h / 2) * W + Math.floor(w / 2)]!;
      }),
      referenceGrad: (_x, g) => {
        const d = new Float64Array(N * C * H * W);
        for (let i = 0; i < g.length; i++) {
          const p = Math.floor(i / (4 * H * W)), r = i % (4 * H * W), h = Math.floor(r / (2 * W)), w = r % (2 * W);
          const j = p * H * W + Math.floor(h / 2) * W + Math.floor(w / 2);
          d[j] = d[j]! + g[i]!;
        }
        return [d];
      },
      tol: TOL,
    });
  });
});
