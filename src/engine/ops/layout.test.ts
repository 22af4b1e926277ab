// permute (plain and tiled transpose), transpose and concat against a reference, forward and backward, f16 storage and dispatch splitting.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../backend.js';
import { collapsePermute } from '../kernels/layout.js';
import { empty, param, scope } from '../tensor.js';
import { checkOp } from '../testing/opcheck.js';
import { testBackend } from '../testing/gpu.js';
import { pipelinesCompiledBy } from '../testing/pipelines.js';
import { backward } from '../grad.js';
import { concat, permute, split, transpose } from './layout.js';
import { sum } from './elementwise.js';

// Copies are exact: the only error is the f32 rounding of the float64 inputs (rtol 1e-7 covers it).
const EXACT = { atol: 0, rtol: 1e-7 };

/** Row-major permute on the CPU: out.shape[d] = shape[perm[d]]. */
function refPermute(x: Float64Array, shape: readonly number[], perm: readonly number[]): Float64Array {
  const out = new Float64Array(x.length);
  const outShape = perm.map((p) => shape[p]!);
  const st = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  for (let i = 0; i < x.length; i++) {
    let rem = i;
    let off = 0;
    for (let d = outShape.length - 1; d >= 0; d--) {
      off += (rem % outShape[d]!) * st[perm[d]!]!;
      rem = Math.floor(rem / outShape[d]!);
    }
    out[i] = x[off]!;
  }
  return out;
}

const inverse = (perm: readonly number[]) => perm.map((_, i) => perm.indexOf(i));

/** Row-major concat on the CPU. */
function refConcat(xs: Float64Array[], shapes: number[][], axis: number): Float64Array {
  const outer = shapes[0]!.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shapes[0]!.slice(axis + 1).reduce((a, b) => a * b, 1);
  const out: number[] = [];
  for (let o = 0; o < outer; o++) xs.forEach((x, i) => out.push(...x.subarray(o * shapes[i]![axis]! * inner, (o + 1) * shapes[i]![axis]! * inner)));
  return Float64Array.from(out);
}

/** Row-major split on the CPU (the inverse of refConcat). */
function refSplit(x: Float64Array, shape: number[], sizes: number[], axis: number): Float64Array[] {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const parts = sizes.map(() => [] as number[]);
  let off = 0;
  for (let o = 0; o < outer; o++) sizes.forEach((s, i) => parts[i]!.push(...x.subarray(off, (off += s * inner))));
  return parts.map((p) => Float64Array.from(p));
}

async function checkPermute(shape: number[], perm: number[], dtype: 'f32' | 'f16' = 'f32'): Promise<void> {
  const outShape = perm.map((p) => shape[p]!);
  const n = shape.reduce((a, b) => a * b, 1);
  // f16 storage: values on a 1/64 grid are exact in half precision
  const data = dtype === 'f16' ? Float64Array.from({ length: n }, (_, i) => ((i * 37) % 128) / 64 - 1) : undefined;
  await checkOp(await testBackend(), {
    inputs: [{ shape, grad: dtype === 'f32', dtype, data }],
    forward: ([x]) => permute(x!, perm),
    reference: ([x]) => refPermute(x!, shape, perm),
    referenceGrad: (_x, g) => [refPermute(g, outShape, inverse(perm))],
    tol: EXACT,
  });
}

describe('permute', () => {
  it('collapses size-1 dims and dims that stay adjacent', () => {
    expect(collapsePermute([2, 3, 4, 5], [0, 2, 3, 1])).toEqual({ shape: [2, 3, 20], perm: [0, 2, 1] });
    expect(collapsePermute([2, 1, 4, 5], [1, 0, 3, 2])).toEqual({ shape: [2, 4, 5], perm: [0, 2, 1] });
    expect(collapsePermute([2, 3, 4], [0, 1, 2])).toEqual({ shape: [24], perm: [0] });
    expect(collapsePermute([3, 4, 5, 6], [3, 1, 0, 2])).toEqual({ shape: [3, 4, 5, 6], perm: [3, 1, 0, 2] });
  });

  it('innermost dim kept (plain kernel): [2,3,4,5] -> [1,0,2,3]', () => checkPermute([2, 3, 4, 5], [1, 0, 2, 3]));
  it('NCHW -> NHWC (tiled transpose): [2,3,4,5] -> [0,2,3,1]', () => checkPermute([2, 3, 4, 5], [0, 2, 3, 1]));
  it('tiled transpose with ragged edge tiles: [2,37,45] -> [0,2,1]', () => checkPermute([2, 37, 45], [0, 2, 1]));
  it('tiled, no dims merge: [3,4,5,6] -> [3,1,0,2]', () => checkPermute([3, 4, 5, 6], [3, 1, 0, 2]));
  it('f16 storage through the tiled kernel', () => checkPermute([3, 40, 33], [2, 0, 1], 'f16'));

  it('transpose swaps two axes, negative axes count from the end', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 3, 7], grad: true }],
      forward: ([x]) => transpose(x!, -1, -2),
      reference: ([x]) => refPermute(x!, [2, 3, 7], [0, 2, 1]),
      referenceGrad: (_x, g) => [refPermute(g, [2, 7, 3], [0, 2, 1])],
      tol: EXACT,
    });
  });

  for (const [name, shape, perm] of [['plain', [2, 3, 4, 5], [1, 0, 2, 3]], ['tiled (NHWC -> NCHW)', [2, 37, 45, 3], [0, 3, 1, 2]]] as const) {
    it(`with a residual added as it writes (${name}), both gradients`, async () => {
      const outShape = perm.map((p) => shape[p]!);
      await checkOp(await testBackend(), {
        inputs: [{ shape: [...shape], grad: true }, { shape: outShape, grad: true }],
        forward: ([x, r]) => permute(x!, perm, r!),
        reference: ([x, r]) => refPermute(x!, [...shape], [...perm]).map((v, i) => v + r![i]!),
        referenceGrad: (_x, g) => [refPermute(g, outShape, inverse([...perm])), g],
        // The sum is rounded to f32 once; the moves stay exact.
        tol: { atol: 1e-6, rtol: 1e-6 },
      });
    });
  }

  it('a residual costs no dispatch of its own (meta device)', () => {
    const b = new MetaBackend();
    const y = permute(empty(b, [1, 16, 16, 8]), [0, 3, 1, 2], empty(b, [1, 8, 16, 16]));
    expect(b.stats.dispatches).toBe(1);
    expect(() => permute(empty(b, [1, 16, 16, 8]), [0, 3, 1, 2], empty(b, [1, 16, 16, 8]))).toThrow(/not the output's shape/);
    y.dispose();
  });

  it('picks the tiled kernel only when the innermost dim moves', () => {
    const b = new MetaBackend();
    permute(empty(b, [2, 8, 16, 16]), [0, 2, 3, 1]);
    permute(empty(b, [2, 8, 16, 4]), [0, 2, 1, 3]);
    expect(b.stats.byKernel.get('transpose')?.dispatches).toBe(1);
    expect(b.stats.byKernel.get('permute')?.dispatches).toBe(1);
  });
});

describe('concat', () => {
  const cases: { shapes: number[][]; axis: number }[] = [
    { shapes: [[2, 3, 2, 2], [2, 5, 2, 2], [2, 1, 2, 2]], axis: 1 },
    { shapes: [[3, 2], [3, 4]], axis: -1 },
    { shapes: [[1, 3], [2, 3]], axis: 0 },
  ];
  for (const { shapes, axis } of cases) {
    it(`[${shapes.map((s) => `[${s}]`).join(', ')}] along ${axis}`, async () => {
      const ax = axis < 0 ? axis + shapes[0]!.length : axis;
      const sizes = shapes.map((s) => s[ax]!);
      const outShape = shapes[0]!.map((d, i) => (i === ax ? sizes.reduce((a, b) => a + b, 0) : d));
      await checkOp(await testBackend(), {
        inputs: shapes.map((shape) => ({ shape, grad: true })),
        forward: (xs) => concat(xs, axis),
        reference: (xs) => refConcat(xs, shapes, ax),
        referenceGrad: (_xs, g) => refSplit(g, outShape, sizes, ax),
        tol: EXACT,
      });
    });
  }

  it('more pieces than one dispatch binds (9 -> two dispatches), gradient to some', async () => {
    const shapes = Array.from({ length: 9 }, (_, i) => [2, 1 + (i % 3), 3]);
    const sizes = shapes.map((s) => s[1]!);
    const grads = new Set([0, 6, 8]);
    await checkOp(await testBackend(), {
      inputs: shapes.map((shape, i) => ({ shape, grad: grads.has(i) })),
      forward: (xs) => concat(xs, 1),
      reference: (xs) => refConcat(xs, shapes, 1),
      referenceGrad: (_xs, g) => refSplit(g, [2, sizes.reduce((a, b) => a + b, 0), 3], sizes, 1).map((p, i) => (grads.has(i) ? p : null)),
      tol: EXACT,
      fd: { samples: 3 },
    });
    const b = new MetaBackend();
    concat(shapes.map((s) => empty(b, s)), 1);
    expect(b.stats.byKernel.get('concat')?.dispatches).toBe(2);
  });

  it("one image's channels (slices on 256-byte boundaries): the gradients are views of the output's, no split dispatch, values exact", async () => {
    // [1, 2, 8, 8] and [1, 3, 8, 8]: the second slice starts 512 bytes in
    const shapes = [[1, 2, 8, 8], [1, 3, 8, 8]];
    await checkOp(await testBackend(), {
      inputs: shapes.map((shape) => ({ shape, grad: true })),
      forward: (xs) => concat(xs, 1),
      reference: (xs) => refConcat(xs, shapes, 1),
      referenceGrad: (_xs, g) => refSplit(g, [1, 5, 8, 8], [2, 3], 1),
      tol: EXACT,
      fd: { samples: 2 },
    });
    const count = (pieces: number[][]) => {
      const b = new MetaBackend();
      const xs = pieces.map((s) => param(b, [], s));
      const y = concat(xs, 1);
      backward(y, empty(b, y.shape));
      return b.stats.byKernel.get('split')?.dispatches ?? 0;
    };
    expect(count(shapes)).toBe(0);
    // a slice starting 4 bytes in cannot be bound: copies
    expect(count([[1, 1, 1, 1], [1, 3, 1, 1]])).toBe(1);
  });
});

describe('layout pipelines', () => {
  it('other sizes of the same permute, concat and split reuse the pipelines', async () => {
    const b = await testBackend();
    const cat = (shapes: number[][]) => {
      const sizes = shapes.map((s) => s[1]!);
      const outShape = [shapes[0]![0]!, sizes.reduce((x, y) => x + y, 0), shapes[0]![2]!];
      // concat forward, split (its backward) for the gradients
      return checkOp(b, { inputs: shapes.map((shape) => ({ shape, grad: true })), forward: (xs) => concat(xs, 1), reference: (xs) => refConcat(xs, shapes, 1), referenceGrad: (_xs, g) => refSplit(g, outShape, sizes, 1), tol: EXACT, fd: { samples: 1 } });
    };
    await checkPermute([2, 3, 4, 5], [0, 2, 3, 1]);
    await checkPermute([2, 3, 4, 5], [1, 0, 2, 3]);
    await cat([[2, 3, 4], [2, 5, 4]]);
    expect(await pipelinesCompiledBy(b, () => checkPermute([3, 7, 2, 9], [0, 2, 3, 1]))).toBe(0);
    expect(await pipelinesCompiledBy(b, () => checkPermute([4, 2, 3, 6], [1, 0, 2, 3]))).toBe(0);
    expect(await pipelinesCompiledBy(b, () => cat([[1, 6, 7], [1, 2, 7]]))).toBe(0);
  });
});

describe('split', () => {
  it('one node with several outputs; an unused piece gets no gradient (treated as zeros)', async () => {
    const shape = [2, 6, 3];
    const sizes = [1, 3, 2];
    await checkOp(await testBackend(), {
      inputs: [{ shape, grad: true }],
      // piece 1 is dropped: its gradient slot is null and must come back as zeros
      forward: ([x]) => {
        const [a, , c] = split(x!, sizes, 1);
        return concat([c!, a!], 1);
      },
      reference: ([x]) => {
        const [a, , c] = refSplit(x!, shape, sizes, 1);
        return refConcat([c!, a!], [[2, 2, 3], [2, 1, 3]], 1);
      },
      referenceGrad: (_x, g) => {
        const [gc, ga] = refSplit(g, [2, 3, 3], [2, 1], 1);
        return [refConcat([ga!, new Float64Array(2 * 3 * 3), gc!], [[2, 1, 3], [2, 3, 3], [2, 2, 3]], 1)];
      },
      tol: EXACT,
    });
  });

  it('nine pieces along the last axis, all used', async () => {
    const sizes = [1, 2, 1, 3, 1, 1, 2, 1, 2];
    const shape = [3, 14];
    await checkOp(await testBackend(), {
      inputs: [{ shape, grad: true }],
      forward: ([x]) => concat(split(x!, sizes, -1).reverse(), -1),
      reference: ([x]) => refConcat(refSplit(x!, shape, sizes, 1).reverse(), [...sizes].reverse().map((s) => [3, s]), 1),
      referenceGrad: (_x, g) => [refConcat(refSplit(g, shape, [...sizes].reverse(), 1).reverse(), sizes.map((s) => [3, s]), 1)],
      tol: EXACT,
    });
  });

  it('records one tape node and runs one dispatch for up to 7 pieces', async () => {
    const b = new MetaBackend();
    const x = empty(b, [2, 10, 4]);
    x.requiresGrad = true;
    const parts = split(x, [2, 3, 5], 1);
    expect(b.stats.byKernel.get('split')?.dispatches).toBe(1);
    expect(new Set(parts.map((p) => p.node)).size).toBe(1);
    expect(parts.map((p) => p.shape)).toEqual([[2, 2, 4], [2, 3, 4], [2, 5, 4]]);
  });

  it('rejects sizes that do not add up', async () => {
    const b = new MetaBackend();
    expect(() => split(empty(b, [2, 5]), [2, 2], 1)).toThrow(/do not add up/);
  });

  it('gradient through split of a parameter accumulates into .grad once per backward', async () => {
    const b = await testBackend();
    const x = param(b, [1, 2, 3, 4, 5, 6], [6]);
    const loss = scope(() => {
      const [a, c] = split(x, [2, 4], 0);
      return sum(concat([c!, a!, a!], 0));
    });
    backward(loss);
    expect(Array.from(await x.grad!.read())).toEqual([2, 2, 1, 1, 1, 1]);
    loss.dispose();
    x.dispose();
  });
});
