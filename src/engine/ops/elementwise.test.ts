// Elementwise ops and reductions against a reference: broadcasting add/mul/sub/scale, activations, f16 reads, sum and mean, pipeline reuse.
import { describe, expect, it } from 'vitest';
import { checkOp } from '../testing/opcheck.js';
import { testBackend } from '../testing/gpu.js';
import { pipelinesCompiledBy } from '../testing/pipelines.js';
import { activation, add, mean, mul, scale, sub, sum, type Activation } from './elementwise.js';

const TOL = { atol: 1e-5, rtol: 1e-5 };

/** Index of `i` (flat, in `out`) into a broadcast input of `shape`. */
function bidx(i: number, out: number[], shape: number[]): number {
  let idx = 0, stride = 1, rem = i;
  const lead = out.length - shape.length;
  const coords = new Array<number>(out.length);
  for (let d = out.length - 1; d >= 0; d--) { coords[d] = rem % out[d]!; rem = Math.floor(rem / out[d]!); }
  for (let d = shape.length - 1; d >= 0; d--) { if (shape[d]! > 1) idx += coords[d + lead]! * stride; stride *= shape[d]!; }
  return idx;
}

function refBinary(out: number[], sa: number[], sb: number[], op: (a: number, b: number) => number) {
  return (xs: Float64Array[]) => Float64Array.from({ length: out.reduce((a, b) => a * b, 1) }, (_, i) => op(xs[0]![bidx(i, out, sa)]!, xs[1]![bidx(i, out, sb)]!));
}

function refBinaryGrad(out: number[], sa: number[], sb: number[], da: (a: number, b: number) => number, db: (a: number, b: number) => number) {
  return (xs: Float64Array[], g: Float64Array) => {
    const ga = new Float64Array(xs[0]!.length), gb = new Float64Array(xs[1]!.length);
    for (let i = 0; i < g.length; i++) {
      const ia = bidx(i, out, sa), ib = bidx(i, out, sb);
      ga[ia] = ga[ia]! + g[i]! * da(xs[0]![ia]!, xs[1]![ib]!);
      gb[ib] = gb[ib]! + g[i]! * db(xs[0]![ia]!, xs[1]![ib]!);
    }
    return [ga, gb];
  };
}

describe('elementwise ops', () => {
  const cases: [string, number[], number[], number[]][] = [
    ['same shape', [3, 5], [3, 5], [3, 5]],
    ['row broadcast', [4, 6], [6], [4, 6]],
    ['channel broadcast (NCHW bias)', [2, 3, 4, 4], [1, 3, 1, 1], [2, 3, 4, 4]],
    ['both broadcast', [3, 1], [1, 4], [3, 4]],
  ];
  for (const [name, sa, sb, so] of cases) {
    it(`add ${name}`, async () => {
      await checkOp(await testBackend(), {
        inputs: [{ shape: sa, grad: true }, { shape: sb, grad: true }],
        forward: ([a, b]) => add(a!, b!),
        reference: refBinary(so, sa, sb, (a, b) => a + b),
        referenceGrad: refBinaryGrad(so, sa, sb, () => 1, () => 1),
        tol: TOL,
      });
    });
    it(`mul ${name}`, async () => {
      await checkOp(await testBackend(), {
        inputs: [{ shape: sa, grad: true }, { shape: sb, grad: true }],
        forward: ([a, b]) => mul(a!, b!),
        reference: refBinary(so, sa, sb, (a, b) => a * b),
        referenceGrad: refBinaryGrad(so, sa, sb, (_a, b) => b, (a) => a),
        tol: TOL,
      });
    });
  }

  it('sub and scale', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [7], grad: true }, { shape: [7], grad: true }],
      forward: ([a, b]) => scale(sub(a!, b!), 2.5),
      reference: ([a, b]) => a!.map((v, i) => 2.5 * (v - b![i]!)),
      referenceGrad: (_xs, g) => [g.map((v) => 2.5 * v), g.map((v) => -2.5 * v)],
      tol: TOL,
    });
  });

  it('reads f16 storage', async () => {
    const data = [0.5, -1.25, 3, 0.1, 65504, -0.0001];
    await checkOp(await testBackend(), {
      inputs: [{ shape: [6], data, dtype: 'f16' }],
      forward: ([a]) => scale(a!, 1),
      // f16 rounding of 0.1 and 1e-4: compare with the values as stored
      reference: () => Float64Array.from([0.5, -1.25, 3, 0.0999755859375, 65504, -0.0001000165939331054]),
      tol: { atol: 1e-9, rtol: 1e-6 },
    });
  });

  const sig = (x: number) => 1 / (1 + Math.exp(-x));
  const erf = (x: number) => {
    // float64 erf by series/continued fraction is overkill here: use a high-precision rational (Numerical Recipes erfc, 1.2e-7)
    const z = Math.abs(x), t = 1 / (1 + 0.5 * z);
    const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
    return x >= 0 ? 1 - r : r - 1;
  };
  const acts: Record<Activation, [(x: number) => number, (x: number) => number]> = {
    silu: [(x) => x * sig(x), (x) => sig(x) * (1 + x * (1 - sig(x)))],
    gelu: [(x) => 0.5 * x * (1 + erf(x / Math.SQRT2)), (x) => 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-x * x / 2)) / Math.sqrt(2 * Math.PI)],
    gelu_tanh: [
      (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
      (x) => { const u = Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3), t = Math.tanh(u); return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * Math.sqrt(2 / Math.PI) * (1 + 3 * 0.044715 * x * x); },
    ],
    quick_gelu: [(x) => x * sig(1.702 * x), (x) => sig(1.702 * x) + 1.702 * x * sig(1.702 * x) * (1 - sig(1.702 * x))],
  };
  for (const [name, [fw, dfw]] of Object.entries(acts) as [Activation, [(x: number) => number, (x: number) => number]][]) {
    it(`activation ${name}`, async () => {
      const data = Array.from({ length: 64 }, (_, i) => -6 + (12 * i) / 63);
      await checkOp(await testBackend(), {
        inputs: [{ shape: [8, 8], data, grad: true }],
        forward: ([x]) => activation(x!, name),
        reference: ([x]) => x!.map(fw),
        referenceGrad: ([x], g) => [x!.map((v, i) => g[i]! * dfw(v))],
        tol: { atol: 2e-6, rtol: 2e-6 },
        gradTol: { atol: 1e-5, rtol: 1e-5 },
      });
    });
  }

  it('sum and mean over axes', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 3, 4], grad: true }],
      forward: ([x]) => sum(x!, [0, 2]),
      reference: ([x]) => Float64Array.from({ length: 3 }, (_, c) => { let s = 0; for (let n = 0; n < 2; n++) for (let k = 0; k < 4; k++) s += x![n * 12 + c * 4 + k]!; return s; }),
      referenceGrad: ([x], g) => [Float64Array.from(x!, (_, i) => g[Math.floor(i / 4) % 3]!)],
      tol: TOL,
    });
    await checkOp(await testBackend(), {
      inputs: [{ shape: [300, 5], grad: true }],
      forward: ([x]) => mean(x!),
      reference: ([x]) => Float64Array.of(x!.reduce((a, b) => a + b, 0) / 1500),
      referenceGrad: ([x], g) => [Float64Array.from(x!, () => g[0]! / 1500)],
      tol: TOL,
    });
  });

  it('a new shape of the same broadcast pattern reuses the pipeline', async () => {
    const b = await testBackend();
    const addCase = (sa: number[], sb: number[], so: number[]) => checkOp(b, { inputs: [{ shape: sa }, { shape: sb }], forward: ([x, y]) => add(x!, y!), reference: refBinary(so, sa, sb, (x, y) => x + y), tol: TOL });
    const scaleCase = (n: number, s: number) => checkOp(b, { inputs: [{ shape: [n] }], forward: ([x]) => scale(x!, s), reference: ([x]) => x!.map((v) => v * s), tol: TOL });
    await addCase([3, 5], [3, 5], [3, 5]);
    await addCase([4, 6], [6], [4, 6]);
    await addCase([2, 3, 4, 4], [1, 3, 1, 1], [2, 3, 4, 4]);
    await scaleCase(7, 2.5);
    // same-shape ops are 1-D whatever their rank; a channel bias is (N, C, HW) whatever the sizes
    expect(await pipelinesCompiledBy(b, () => addCase([7, 2, 9], [7, 2, 9], [7, 2, 9]))).toBe(0);
    expect(await pipelinesCompiledBy(b, () => addCase([5, 7], [7], [5, 7]))).toBe(0);
    expect(await pipelinesCompiledBy(b, () => addCase([3, 5, 2, 3], [1, 5, 1, 1], [3, 5, 2, 3]))).toBe(0);
    expect(await pipelinesCompiledBy(b, () => scaleCase(1000, -0.75))).toBe(0);
  });

  it('a sum over the same axes of another shape reuses the reduction pipeline', async () => {
    const b = await testBackend();
    const sum02 = (A: number, B: number, C: number) =>
      checkOp(b, {
        inputs: [{ shape: [A, B, C] }],
        forward: ([x]) => sum(x!, [0, 2]),
        reference: ([x]) => Float64Array.from({ length: B }, (_, j) => { let t = 0; for (let i = 0; i < A; i++) for (let k = 0; k < C; k++) t += x![(i * B + j) * C + k]!; return t; }),
        tol: TOL,
      });
    await sum02(2, 3, 4);
    expect(await pipelinesCompiledBy(b, () => sum02(5, 7, 3))).toBe(0);
  });

  it('rejects shapes that do not broadcast', async () => {
    const b = await testBackend();
    const { tensor } = await import('../tensor.js');
    const x = tensor(b, [1, 2, 3], [3]);
    const y = tensor(b, [1, 2], [2]);
    expect(() => add(x, y)).toThrow(/do not broadcast/);
    x.dispose();
    y.dispose();
  });
});
