// powScalar ((x + c)^p: square root, reciprocal, square, guarded reciprocal) forward and backward against float64 and central differences.
import { describe, it } from 'vitest';
import { checkOp } from '../testing/opcheck.js';
import { testBackend } from '../testing/gpu.js';
import { powScalar } from './pow.js';

describe('powScalar', () => {
  // Positive bases only (the op's domain), spread over [0.25, 1.75].
  const data = Array.from({ length: 24 }, (_, i) => 0.25 + Math.abs(Math.sin(i * 1.7 + 0.3)) * 1.5);
  for (const [p, c] of [[0.5, 0], [-1, 0], [2, 0], [-0.5, 0], [-1, 0.3]] as const) {
    it(`(x + ${c})^${p}`, async () => {
      await checkOp(await testBackend(), {
        inputs: [{ shape: [4, 6], data, grad: true }],
        forward: ([x]) => powScalar(x!, p, c),
        reference: ([x]) => x!.map((v) => (v + c) ** p),
        referenceGrad: ([x], g) => [x!.map((v, i) => g[i]! * p * (v + c) ** (p - 1))],
        tol: { atol: 1e-5, rtol: 1e-5 },
        fd: { eps: 1e-3 },
      });
    });
  }
});
