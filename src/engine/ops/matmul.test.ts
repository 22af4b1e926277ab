import { describe, it } from 'vitest';
import { checkOp } from '../testing/opcheck.js';
import { testBackend } from '../testing/gpu.js';
import { refMatmul, refTranspose } from '../testing/ref.js';
import { linear, matmul, matmulNaive } from './matmul.js';

const TOL = { atol: 1e-4, rtol: 1e-4 };

describe('matmul', () => {
  for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
    it(`ragged 37x19x53 transA=${transA} transB=${transB}`, async () => {
      const [M, K, N] = [37, 19, 53];
      const aShape = transA ? [K, M] : [M, K];
      const bShape = transB ? [N, K] : [K, N];
      await checkOp(await testBackend(), {
        inputs: [{ shape: aShape, grad: true }, { shape: bShape, grad: true }],
        forward: ([a, b]) => matmul(a!, b!, { transA, transB }),
        reference: ([a, b]) => refMatmul(a!, [1, ...aShape], b!, [1, ...bShape], transA, transB),
        referenceGrad: ([a, b], g) => {
          // d op(A) = g op(B)ᵀ, d op(B) = op(A)ᵀ g, transposed back for transposed operands
          const opB = transB ? b! : refTranspose(b!, 1, K, N); // op(B)ᵀ as [N, K] row-major
          const dOpA = refMatmul(g, [1, M, N], opB, [1, N, K]);
          const opAT = transA ? a! : refTranspose(a!, 1, M, K); // op(A)ᵀ [K, M]
          const dOpB = refMatmul(opAT, [1, K, M], g, [1, M, N]);
          return [transA ? refTranspose(dOpA, 1, M, K) : dOpA, transB ? refTranspose(dOpB, 1, K, N) : dOpB];
        },
        tol: TOL,
      });
    });
  }

  it('batched with a broadcast operand', async () => {
    const [B, M, K, N] = [3, 5, 7, 4];
    await checkOp(await testBackend(), {
      inputs: [{ shape: [B, M, K], grad: true }, { shape: [K, N], grad: true }],
      forward: ([a, b]) => matmul(a!, b!),
      reference: ([a, b]) => refMatmul(a!, [B, M, K], b!, [1, K, N]),
      referenceGrad: ([a, b], g) => {
        const da = refMatmul(g, [B, M, N], refTranspose(b!, 1, K, N), [1, N, K]);
        const db = new Float64Array(K * N);
        for (let t = 0; t < B; t++) {
          const part = refMatmul(refTranspose(a!.subarray(t * M * K, (t + 1) * M * K), 1, M, K), [1, K, M], g.subarray(t * M * N, (t + 1) * M * N), [1, M, N]);
          for (let i = 0; i < db.length; i++) db[i] = db[i]! + part[i]!;
        }
        return [da, db];
      },
      tol: TOL,
    });
  });

  it('a 256x320x320 product matches the CPU', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [256, 320] }, { shape: [320, 320] }],
      forward: ([a, b]) => matmul(a!, b!),
      reference: ([a, b]) => refMatmul(a!, [1, 256, 320], b!, [1, 320, 320]),
      tol: { atol: 2e-4, rtol: 1e-4 },
    });
  });

  it('naive kernel agrees', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 9, 13] }, { shape: [2, 11, 13] }],
      forward: ([a, b]) => matmulNaive(a!, b!, { transB: true }),
      reference: ([a, b]) => refMatmul(a!, [2, 9, 13], b!, [2, 11, 13], false, true),
      tol: TOL,
    });
  });
});

describe('linear', () => {
  const refLinear = (x: Float64Array, w: Float64Array, b: Float64Array | null, R: number, I: number, O: number) => {
    const y = refMatmul(x, [1, R, I], w, [1, O, I], false, true);
    if (b) for (let r = 0; r < R; r++) for (let o = 0; o < O; o++) y[r * O + o] = y[r * O + o]! + b[o]!;
    return y;
  };
  const gradLinear = (x: Float64Array, w: Float64Array, g: Float64Array, R: number, I: number, O: number) => {
    const dx = refMatmul(g, [1, R, O], w, [1, O, I]);
    const dw = refMatmul(g, [1, R, O], x, [1, R, I], true, false);
    const db = new Float64Array(O);
    for (let r = 0; r < R; r++) for (let o = 0; o < O; o++) db[o] = db[o]! + g[r * O + o]!;
    return [dx, dw, db];
  };

  it('with bias over [2, 5, 24] -> 70, all gradients', async () => {
    const [R, I, O] = [10, 24, 70];
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 5, I], grad: true }, { shape: [O, I], grad: true }, { shape: [O], grad: true }],
      forward: ([x, w, b]) => linear(x!, w!, b!),
      reference: ([x, w, b]) => refLinear(x!, w!, b!, R, I, O),
      referenceGrad: ([x, w], g) => gradLinear(x!, w!, g, R, I, O),
      tol: TOL,
    });
  });

  it('without bias, frozen f16 weight: gradient to x only', async () => {
    const [R, I, O] = [66, 17, 9];
    const w = Array.from({ length: O * I }, (_, i) => ((i * 37) % 101) / 50 - 1);
    // the reference sees the weight as stored: rounded to f16
    const { roundF16 } = await import('../dtype.js');
    const w16 = Float64Array.from(roundF16(w));
    await checkOp(await testBackend(), {
      inputs: [{ shape: [R, I], grad: true }, { shape: [O, I], data: w, dtype: 'f16' }],
      forward: ([x, ww]) => linear(x!, ww!),
      reference: ([x]) => refLinear(x!, w16, null, R, I, O),
      referenceGrad: ([x], g) => [gradLinear(x!, w16, g, R, I, O)[0]!, null],
      tol: TOL,
    });
  });
});
