import { describe, expect, it } from 'vitest';
import { backward } from '../grad.js';
import { noGrad } from '../autograd.js';
import { param, scope, tensor } from '../tensor.js';
import { checkOp } from '../testing/opcheck.js';
import { testBackend } from '../testing/gpu.js';
import { randomArray } from '../testing/allclose.js';
import { concat, permute, split, transpose } from './layout.js';
import { dropout } from './dropout.js';
import { huberLoss, mseLoss } from './loss.js';
import { mul, sum } from './elementwise.js';

// copies are exact; the tolerance only absorbs the f32 rounding of the float64 inputs
const EXACT = { atol: 0, rtol: 1e-7 };
const TOL = { atol: 1e-6, rtol: 1e-5 };

/** Permute a row-major array on the CPU. */
function refPermute(x: Float64Array, shape: number[], perm: number[]): Float64Array {
  const out = new Float64Array(x.length);
  const outShape = perm.map((p) => shape[p]!);
  const st = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  for (let i = 0; i < x.length; i++) {
    let rem = i, off = 0;
    for (let d = outShape.length - 1; d >= 0; d--) { off += (rem % outShape[d]!) * st[perm[d]!]!; rem = Math.floor(rem / outShape[d]!); }
    out[i] = x[off]!;
  }
  return out;
}

describe('layout ops', () => {
  it('permute [2,3,4,5] -> [0,2,3,1] and back', async () => {
    const perm = [0, 2, 3, 1];
    const inv = [0, 3, 1, 2];
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 3, 4, 5], grad: true }],
      forward: ([x]) => permute(x!, perm),
      reference: ([x]) => refPermute(x!, [2, 3, 4, 5], perm),
      referenceGrad: (_x, g) => [refPermute(g, [2, 4, 5, 3], inv)],
      tol: EXACT,
    });
  });

  it('transpose', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [3, 7], grad: true }],
      forward: ([x]) => transpose(x!, 0, 1),
      reference: ([x]) => refPermute(x!, [3, 7], [1, 0]),
      tol: EXACT,
    });
  });

  it('concat along channels and its gradient', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 3, 2, 2], grad: true }, { shape: [2, 5, 2, 2], grad: true }],
      forward: ([a, b]) => concat([a!, b!], 1),
      reference: ([a, b]) => {
        const out = new Float64Array(2 * 8 * 4);
        for (let n = 0; n < 2; n++) {
          out.set(a!.subarray(n * 12, n * 12 + 12), n * 32);
          out.set(b!.subarray(n * 20, n * 20 + 20), n * 32 + 12);
        }
        return out;
      },
      tol: EXACT,
    });
  });

  it('split with an unused piece', async () => {
    const b = await testBackend();
    const data = randomArray(2 * 6, 3);
    const x = param(b, data, [2, 6]);
    const loss = scope(() => {
      const [p0] = split(x, [1, 3, 2], 1); // the other two pieces get no gradient
      return sum(mul(p0!, p0!));
    });
    backward(loss);
    const g = await x.grad!.read();
    // loss = Σ p0², so d/dx = 2 p0 on column 0 and 0 elsewhere
    const want = Array.from(data, (v, i) => (i % 6 === 0 ? 2 * v : 0));
    g.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 5));
    loss.dispose();
    x.dispose();
  });

  it('split forward matches slices', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 8, 3], grad: true }],
      forward: ([x]) => split(x!, [4, 4], 1)[1]!,
      reference: ([x]) => Float64Array.from({ length: 2 * 4 * 3 }, (_, i) => x![Math.floor(i / 12) * 24 + 12 + (i % 12)]!),
      tol: EXACT,
    });
  });
});

describe('dropout', () => {
  it('keeps about 1-p, scales by 1/(1-p), replays by seed, differs across seeds', async () => {
    const b = await testBackend();
    const x = tensor(b, new Float32Array(10000).fill(1), [10000]);
    const [a1, a2, c] = await noGrad(() => Promise.all([dropout(x, 0.1, 42).read(), dropout(x, 0.1, 42).read(), dropout(x, 0.1, 43).read()]));
    const kept = a1.filter((v) => v !== 0);
    expect(kept.length / 10000).toBeGreaterThan(0.88);
    expect(kept.length / 10000).toBeLessThan(0.92);
    expect(kept.every((v) => Math.abs(v - 1 / 0.9) < 1e-6)).toBe(true);
    expect(a2).toEqual(a1);
    expect(c).not.toEqual(a1);
    x.dispose();
  });

  it('backward applies the same mask as the forward', async () => {
    const b = await testBackend();
    const data = randomArray(256, 5);
    const x = param(b, data, [256]);
    const y = scope(() => dropout(x, 0.3, 7));
    const out = await y.read();
    const g = randomArray(256, 6);
    const seed = tensor(b, g, [256]);
    backward(y, seed);
    const dx = await x.grad!.read();
    for (let i = 0; i < 256; i++) {
      const kept = out[i] !== 0;
      expect(dx[i]).toBeCloseTo(kept ? g[i]! / 0.7 : 0, 5);
      if (kept) expect(out[i]).toBeCloseTo(data[i]! / 0.7, 5);
    }
    for (const t of [x, y, seed]) t.dispose();
  });
});

describe('losses', () => {
  const B = 3, E = 8;
  const w = [0.5, 1, 2];
  it('weighted MSE', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [B, 2, 4], grad: true }, { shape: [B, 2, 4] }, { shape: [B], data: w }],
      forward: ([p, t, ww]) => mseLoss(p!, t!, ww!),
      reference: ([p, t]) => {
        let s = 0;
        for (let b = 0; b < B; b++) { let m = 0; for (let e = 0; e < E; e++) m += (p![b * E + e]! - t![b * E + e]!) ** 2; s += w[b]! * m / E; }
        return Float64Array.of(s / B);
      },
      referenceGrad: ([p, t], g) => [Float64Array.from(p!, (v, i) => g[0]! * w[Math.floor(i / E)]! * 2 * (v - t![i]!) / (E * B)), null, null],
      tol: TOL,
    });
  });

  it('pseudo-Huber', async () => {
    const d = 0.3;
    const ph = (r: number) => 2 * d * d * (Math.sqrt(1 + (r / d) ** 2) - 1);
    await checkOp(await testBackend(), {
      inputs: [{ shape: [B, E], grad: true }, { shape: [B, E] }],
      forward: ([p, t]) => huberLoss(p!, t!, d),
      reference: ([p, t]) => Float64Array.of(p!.reduce((s, v, i) => s + ph(v - t![i]!), 0) / (B * E)),
      referenceGrad: ([p, t], g) => [Float64Array.from(p!, (v, i) => { const r = v - t![i]!; return g[0]! * 2 * r / Math.sqrt(1 + (r / d) ** 2) / (B * E); }), null],
      tol: TOL,
    });
  });
});
