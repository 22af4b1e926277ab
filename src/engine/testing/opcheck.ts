// One harness for op tests: forward vs a CPU float64 reference, backward vs the reference's VJP,
// and backward vs central finite differences of the GPU forward itself.
import type { Backend } from '../backend.js';
import type { DType } from '../dtype.js';
import { backward } from '../grad.js';
import { noGrad } from '../autograd.js';
import { scope, tensor, type Tensor } from '../tensor.js';
import { assertClose, randomArray, rng, type Tolerance } from './allclose.js';

export interface OpInput {
  shape: number[];
  /** Values; uniform in [-1, 1) from the input's index when omitted. */
  data?: ArrayLike<number>;
  /** Differentiate with respect to this input. */
  grad?: boolean;
  dtype?: DType;
}

export interface OpCheck {
  inputs: OpInput[];
  forward: (xs: Tensor[]) => Tensor;
  /** CPU float64 forward. */
  reference: (xs: Float64Array[]) => Float64Array;
  /** CPU float64 vector-Jacobian product for the grad inputs (same order as `inputs`; null for others). */
  referenceGrad?: (xs: Float64Array[], gOut: Float64Array) => (Float64Array | null)[];
  tol: Tolerance;
  gradTol?: Tolerance;
  /** Finite-difference check: elements sampled per grad input, step size, tolerance. */
  fd?: { samples?: number; eps?: number; tol?: Tolerance };
  seed?: number;
}

/** Run the whole check; throws with the op, the part and the worst element on failure. */
export async function checkOp(backend: Backend, c: OpCheck): Promise<void> {
  const seed = c.seed ?? 1;
  const host = c.inputs.map((inp, i) => Float64Array.from(inp.data ?? randomArray(inp.shape.reduce((a, b) => a * b, 1), seed * 101 + i)));
  const expected = c.reference(host);
  const gOut = randomArray(expected.length, seed * 7919 + 3);

  const { out, grads } = await runGpu(backend, c, host, gOut);
  assertClose(out, expected, c.tol, 'forward');

  if (c.referenceGrad) {
    const ref = c.referenceGrad(host, gOut);
    c.inputs.forEach((inp, i) => {
      if (!inp.grad) return;
      assertClose(grads[i]!, ref[i]!, c.gradTol ?? c.tol, `gradient of input ${i} vs reference`);
    });
  }

  const fd = { samples: 6, eps: 1e-2, tol: { atol: 5e-3, rtol: 3e-2 }, ...c.fd };
  const r = rng(seed * 31 + 7);
  for (let i = 0; i < c.inputs.length; i++) {
    if (!c.inputs[i]!.grad) continue;
    const n = host[i]!.length;
    const picks = Array.from({ length: Math.min(fd.samples, n) }, () => Math.floor(r() * n));
    const numeric: number[] = [];
    for (const j of picks) {
      const x0 = host[i]![j]!;
      const loss = async (v: number) => {
        const hs = host.map((h, k) => (k === i ? Float64Array.from(h, (y, m) => (m === j ? v : y)) : h));
        const o = await forwardOnly(backend, c, hs);
        let s = 0;
        for (let m = 0; m < o.length; m++) s += o[m]! * gOut[m]!;
        return s;
      };
      numeric.push(((await loss(x0 + fd.eps)) - (await loss(x0 - fd.eps))) / (2 * fd.eps));
    }
    const analytic = picks.map((j) => grads[i]![j]!);
    assertClose(analytic, numeric, fd.tol, `gradient of input ${i} vs central differences at [${picks.join(', ')}]`);
  }
}

function upload(backend: Backend, c: OpCheck, host: Float64Array[], withGrad: boolean): Tensor[] {
  return c.inputs.map((inp, i) => {
    const t = tensor(backend, host[i]!, inp.shape, inp.dtype ?? 'f32');
    t.requiresGrad = withGrad && !!inp.grad;
    return t;
  });
}

async function forwardOnly(backend: Backend, c: OpCheck, host: Float64Array[]): Promise<Float32Array> {
  const out = noGrad(() => scope(() => c.forward(upload(backend, c, host, false))));
  const v = await out.read();
  out.dispose();
  return v;
}

async function runGpu(backend: Backend, c: OpCheck, host: Float64Array[], gOut: Float64Array): Promise<{ out: Float32Array; grads: (Float32Array | null)[] }> {
  const xs = upload(backend, c, host, true);
  const y = scope(() => c.forward(xs));
  const out = await y.read();
  const anyGrad = c.inputs.some((i) => i.grad);
  if (anyGrad) {
    const seed = tensor(backend, gOut, y.shape);
    backward(y, seed);
    seed.dispose();
  }
  const grads = await Promise.all(xs.map((x) => (x.grad ? x.grad.read() : Promise.resolve(null))));
  y.dispose();
  for (const x of xs) x.dispose();
  await backend.sync();
  return { out, grads };
}
