// softmax against a reference: large logits stay finite and exact, f16-stored input.
import { describe, it } from 'vitest';
import { checkOp } from '../testing/opcheck.js';
import { testBackend } from '../testing/gpu.js';
import { randomArray } from '../testing/allclose.js';
import { roundF16 } from '../dtype.js';
import { softmax } from './softmax.js';

/** Float64 softmax of `x` (shape [outer, n, inner]) along n, and its VJP for `g`. */
function refSoftmax(x: Float64Array, outer: number, n: number, inner: number, g?: Float64Array) {
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      const at = (e: number) => (o * n + e) * inner + i;
      let m = -Infinity;
      for (let e = 0; e < n; e++) m = Math.max(m, x[at(e)]!);
      let z = 0;
      for (let e = 0; e < n; e++) z += Math.exp(x[at(e)]! - m);
      for (let e = 0; e < n; e++) y[at(e)] = Math.exp(x[at(e)]! - m) / z;
      if (!g) continue;
      let dot = 0;
      for (let e = 0; e < n; e++) dot += g[at(e)]! * y[at(e)]!;
      for (let e = 0; e < n; e++) dx[at(e)] = y[at(e)]! * (g[at(e)]! - dot);
    }
  return { y, dx };
}

// Probabilities are at most 1 and the kernel works in f32: a few ulps of 1 absolute.
const TOL = { atol: 1e-6, rtol: 1e-5 };

describe('softmax', () => {
  const cases: [string, number[], number][] = [
    // name, shape, axis
    ['last axis, short rows', [3, 7], -1],
    ['last axis, 300-wide rows (several elements per thread, ragged)', [2, 300], 1],
    ['middle axis (strided rows)', [2, 5, 3], 1],
    ['first axis', [4, 6], 0],
    ['single element rows', [5, 1], -1],
  ];
  for (const [name, shape, axis] of cases) {
    it(name, async () => {
      const ax = axis < 0 ? axis + shape.length : axis;
      const outer = shape.slice(0, ax).reduce((a, b) => a * b, 1);
      const inner = shape.slice(ax + 1).reduce((a, b) => a * b, 1);
      const n = shape[ax]!;
      await checkOp(await testBackend(), {
        inputs: [{ shape, grad: true }],
        forward: ([x]) => softmax(x!, axis),
        reference: ([x]) => refSoftmax(x!, outer, n, inner).y,
        referenceGrad: ([x], g) => [refSoftmax(x!, outer, n, inner, g).dx],
        tol: TOL,
      });
    });
  }

  it('large logits (80 ± 15) stay finite and exact', async () => {
    const shape = [4, 77];
    const data = Float64Array.from(randomArray(4 * 77, 5), (v) => Math.fround(80 + 15 * v));
    await checkOp(await testBackend(), {
      inputs: [{ shape, data, grad: true }],
      forward: ([x]) => softmax(x!),
      reference: ([x]) => refSoftmax(x!, 4, 77, 1).y,
      referenceGrad: ([x], g) => [refSoftmax(x!, 4, 77, 1, g).dx],
      tol: TOL,
      // f32 logits near 80 carry ~1e-5 absolute error; a larger step keeps the difference quotient meaningful.
      fd: { eps: 5e-2, tol: { atol: 5e-3, rtol: 5e-2 } },
    });
  });

  it('f16-stored input', async () => {
    const data = Float64Array.from(roundF16(randomArray(2 * 33, 9)));
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 33], data, dtype: 'f16' }],
      forward: ([x]) => softmax(x!),
      // values already rounded through f16, so storage loses nothing and the reference sees the same numbers
      reference: ([x]) => refSoftmax(x!, 2, 33, 1).y,
      tol: TOL,
    });
  });
});

