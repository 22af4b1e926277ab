// MSE and pseudo-Huber losses, plain and weighted per batch item: values and gradients against a reference, shape and delta errors.
import { describe, expect, it } from 'vitest';
import { testBackend } from '../testing/gpu.js';
import { checkOp } from '../testing/opcheck.js';
import { tensor } from '../tensor.js';
import { huberLoss, mseLoss } from './loss.js';

/** Float64 reference of a per-element loss ℓ(pred − target) reduced as the engine does: mean over
 * the batch of w_b · mean over item b; the VJP for pred and target (dℓ/dr and its negative). */
function refLoss(B: number, l: (r: number) => number, dl: (r: number) => number, w?: number[]) {
  const wb = (b: number) => (w ? w[b]! : 1);
  return {
    reference: ([p, t]: Float64Array[]) => {
      const E = p!.length / B;
      let s = 0;
      for (let b = 0; b < B; b++) {
        let m = 0;
        for (let e = 0; e < E; e++) m += l(p![b * E + e]! - t![b * E + e]!);
        s += (wb(b) * m) / E;
      }
      return Float64Array.of(s / B);
    },
    referenceGrad: ([p, t]: Float64Array[], g: Float64Array) => {
      const E = p!.length / B;
      const dp = Float64Array.from(p!, (v, i) => (g[0]! * wb(Math.floor(i / E)) * dl(v - t![i]!)) / (E * B));
      return [dp, dp.map((v) => -v), null];
    },
  };
}

const mse = [(r: number) => r * r, (r: number) => 2 * r] as const;
const D = 0.3;
/** Pseudo-Huber with δ = 0.3; inputs in [-1, 1) give |r| up to 2, well into the linear part. */
const huber = [(r: number) => 2 * D * D * (Math.sqrt(1 + (r / D) ** 2) - 1), (r: number) => (2 * r) / Math.sqrt(1 + (r / D) ** 2)] as const;
const W = [0.5, 1, 2];
const TOL = { atol: 1e-6, rtol: 1e-5 };

describe('losses', () => {
  it('MSE: the mean over all elements, gradients to pred and target', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 3, 4], grad: true }, { shape: [2, 3, 4], grad: true }],
      forward: ([p, t]) => mseLoss(p!, t!),
      ...refLoss(2, ...mse),
      tol: TOL,
    });
  });

  it('MSE weighted per batch item', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [3, 2, 4], grad: true }, { shape: [3, 2, 4], grad: true }, { shape: [3], data: W }],
      forward: ([p, t, w]) => mseLoss(p!, t!, w!),
      ...refLoss(3, ...mse, W),
      tol: TOL,
    });
  });

  it('pseudo-Huber (δ = 0.3), both regimes', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [3, 8], grad: true }, { shape: [3, 8], grad: true }],
      forward: ([p, t]) => huberLoss(p!, t!, D),
      ...refLoss(3, ...huber),
      tol: TOL,
    });
  });

  it('pseudo-Huber weighted per batch item', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [3, 2, 2, 2], grad: true }, { shape: [3, 2, 2, 2] }, { shape: [3], data: W }],
      forward: ([p, t, w]) => huberLoss(p!, t!, D, w!),
      ...refLoss(3, ...huber, W),
      tol: TOL,
    });
  });

  it('returns a scalar; rejects mismatched shapes, weights and δ', async () => {
    const b = await testBackend();
    const p = tensor(b, [1, 2, 3, 4], [2, 2]);
    const t = tensor(b, [0, 0, 0, 0], [2, 2]);
    const loss = mseLoss(p, t);
    expect(loss.shape).toEqual([]);
    expect(Array.from(await loss.read())).toEqual([7.5]);
    const t2 = tensor(b, [0, 0, 0, 0], [4]);
    const w3 = tensor(b, [1, 1, 1], [3]);
    expect(() => mseLoss(p, t2)).toThrow(/same non-empty shape/);
    expect(() => mseLoss(p, t, w3)).toThrow(/3 entries for a batch of 2/);
    expect(() => huberLoss(p, t, 0)).toThrow(/delta must be positive/);
    for (const x of [p, t, loss, t2, w3]) x.dispose();
  });
});
