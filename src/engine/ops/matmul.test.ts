// matmul forward and backward against a reference for every transpose, f16 operands, tiles and K splits, large grids, and one source per layer kind.
import { describe, expect, it, onTestFinished } from 'vitest';
import { MetaBackend } from '../backend.js';
import { roundF16 } from '../dtype.js';
import { backward } from '../grad.js';
import { empty, param, tensor, type Tensor } from '../tensor.js';
import { splitSumKernel } from '../kernels/conv2d.js';
import { gemmKernel, gemmThresholds, gemmTiling, type GemmParams } from '../kernels/matmul.js';
import { assertClose, randomArray } from '../testing/allclose.js';
import { checkOp } from '../testing/opcheck.js';
import { testBackend } from '../testing/gpu.js';
import { sum } from './elementwise.js';
import { noGrad } from '../autograd.js';
import { dropout } from './dropout.js';
import { linear, linearInto, linearPlus, matmul, matmulDropped, matmulInto, matmulNaive, matmulPair, matmulPlus, nativeF16, type PairGemm } from './matmul.js';

// f32 accumulation over K <= 130 of values in [-1, 1): errors stay near 1e-6.
const TOL = { atol: 1e-5, rtol: 1e-5 };

// ---- CPU float64 reference: batched op(A) op(B) with NumPy broadcasting of the batch dims ----------

const prod = (s: readonly number[]) => s.reduce((x, y) => x * y, 1);

interface Geometry {
  S: number[];
  M: number;
  N: number;
  K: number;
  /** Matrix index of A and of B used by output matrix z. */
  za: (z: number) => number;
  zb: (z: number) => number;
  ai: (m: number, k: number) => number;
  bi: (k: number, n: number) => number;
}

function batchIndex(z: number, S: number[], shape: number[]): number {
  let idx = 0, stride = 1;
  for (let d = S.length - 1, e = shape.length - 1; d >= 0; d--, e--) {
    const c = z % S[d]!;
    z = Math.floor(z / S[d]!);
    if (e >= 0) {
      if (shape[e]! > 1) idx += c * stride;
      stride *= shape[e]!;
    }
  }
  return idx;
}

function geometry(as: number[], bs: number[], tA: boolean, tB: boolean): Geometry {
  const [ar, ac] = as.slice(-2) as [number, number];
  const [br, bc] = bs.slice(-2) as [number, number];
  const [M, K] = tA ? [ac, ar] : [ar, ac];
  const N = tB ? br : bc;
  const ab = as.slice(0, -2), bb = bs.slice(0, -2);
  const n = Math.max(ab.length, bb.length);
  const S = Array.from({ length: n }, (_, i) => Math.max(ab[ab.length - n + i] ?? 1, bb[bb.length - n + i] ?? 1));
  return {
    S, M, N, K,
    za: (z) => batchIndex(z, S, ab),
    zb: (z) => batchIndex(z, S, bb),
    ai: (m, k) => (tA ? k * M + m : m * K + k),
    bi: (k, n) => (tB ? n * K + k : k * N + n),
  };
}

function refMatmul(a: Float64Array, as: number[], b: Float64Array, bs: number[], tA = false, tB = false): Float64Array {
  const g = geometry(as, bs, tA, tB);
  const out = new Float64Array(prod(g.S) * g.M * g.N);
  for (let z = 0; z < prod(g.S); z++) {
    const ao = g.za(z) * g.M * g.K, bo = g.zb(z) * g.K * g.N;
    for (let m = 0; m < g.M; m++)
      for (let n = 0; n < g.N; n++) {
        let s = 0;
        for (let k = 0; k < g.K; k++) s += a[ao + g.ai(m, k)]! * b[bo + g.bi(k, n)]!;
        out[(z * g.M + m) * g.N + n] = s;
      }
  }
  return out;
}

/** VJP of refMatmul: every product a*b sends gOut*b to a and gOut*a to b, broadcast copies summing. */
function refMatmulGrad(a: Float64Array, as: number[], b: Float64Array, bs: number[], tA: boolean, tB: boolean, gOut: Float64Array): [Float64Array, Float64Array] {
  const g = geometry(as, bs, tA, tB);
  const da = new Float64Array(a.length), db = new Float64Array(b.length);
  for (let z = 0; z < prod(g.S); z++) {
    const ao = g.za(z) * g.M * g.K, bo = g.zb(z) * g.K * g.N;
    for (let m = 0; m < g.M; m++)
      for (let n = 0; n < g.N; n++) {
        const go = gOut[(z * g.M + m) * g.N + n]!;
        for (let k = 0; k < g.K; k++) {
          const i = ao + g.ai(m, k), j = bo + g.bi(k, n);
          da[i] = da[i]! + go * b[j]!;
          db[j] = db[j]! + go * a[i]!;
        }
      }
  }
  return [da, db];
}

function refLinear(x: Float64Array, w: Float64Array, bias: Float64Array | null, O: number, I: number): Float64Array {
  const y = refMatmul(x, [x.length / I, I], w, [O, I], false, true);
  if (bias) for (let i = 0; i < y.length; i++) y[i] = y[i]! + bias[i % O]!;
  return y;
}

function refLinearGrad(x: Float64Array, w: Float64Array, g: Float64Array, O: number, I: number): [Float64Array, Float64Array, Float64Array] {
  const [dx, dw] = refMatmulGrad(x, [x.length / I, I], w, [O, I], false, true, g);
  const db = new Float64Array(O);
  for (let i = 0; i < g.length; i++) db[i % O] = db[i % O]! + g[i]!;
  return [dx, dw, db];
}

/** Stored shape of an operand: [..., r, c] with the last two swapped when transposed. */
const stored = (batch: number[], rows: number, cols: number, t: boolean) => [...batch, ...(t ? [cols, rows] : [rows, cols])];

// ---- matmul -----------------------------------------------------------------------------------------

describe('matmul', () => {
  const combos = [[false, false], [true, false], [false, true], [true, true]] as const;

  // [name, A batch, B batch, M, K, N, transpose combinations]: every combination on the ragged
  // single tile; on the others, the ones that take distinct paths (batch folded into M or K, or
  // summed over broadcast dims inside the kernel).
  const shapes: [string, number[], number[], number, number, number, (readonly [boolean, boolean])[]][] = [
    ['ragged 37x19x53', [], [], 37, 19, 53, [...combos]],
    ['batched 2 with ragged tiles 70x33x130', [2], [2], 70, 33, 130, [combos[0], combos[3]]],
    ['broadcast [2,1] x [3]', [2, 1], [3], 5, 6, 7, [combos[2]]],
    ['shared B [3,2] x []', [3, 2], [], 9, 5, 4, [combos[0], combos[1]]],
    ['shared A [] x [4]', [], [4], 6, 8, 3, [combos[0]]],
  ];
  for (const [name, ab, bb, M, K, N, which] of shapes) {
    for (const [tA, tB] of which) {
      it(`${name} transA=${tA} transB=${tB}`, async () => {
        const as = stored(ab, M, K, tA), bs = stored(bb, K, N, tB);
        await checkOp(await testBackend(), {
          inputs: [{ shape: as, grad: true }, { shape: bs, grad: true }],
          forward: ([a, b]) => matmul(a!, b!, { transA: tA, transB: tB }),
          reference: ([a, b]) => refMatmul(a!, as, b!, bs, tA, tB),
          referenceGrad: ([a, b], g) => refMatmulGrad(a!, as, b!, bs, tA, tB, g),
          tol: TOL,
          gradTol: { atol: 2e-5, rtol: 1e-5 },
        });
      });
    }
  }

  it('f16 operand (frozen) times f32 activations, gradient to the f32 side only', async () => {
    const as = [2, 5, 20], bs = [20, 7];
    const bData = randomArray(140, 99);
    const b16 = Float64Array.from(roundF16(bData));
    await checkOp(await testBackend(), {
      inputs: [{ shape: as, grad: true }, { shape: bs, data: bData, dtype: 'f16' }],
      forward: ([a, b]) => matmul(a!, b!),
      // the reference sees the operand as stored: rounded to f16
      reference: ([a]) => refMatmul(a!, as, b16, bs),
      referenceGrad: ([a], g) => [refMatmulGrad(a!, as, b16, bs, false, false, g)[0], null],
      tol: TOL,
    });
  });

  it('f16 first operand, transposed', async () => {
    const as = [12, 10], bs = [3, 12, 5];
    const aData = randomArray(120, 5);
    const a16 = Float64Array.from(roundF16(aData));
    await checkOp(await testBackend(), {
      inputs: [{ shape: as, data: aData, dtype: 'f16' }, { shape: bs, grad: true }],
      forward: ([a, b]) => matmul(a!, b!, { transA: true }),
      reference: ([, b]) => refMatmul(a16, as, b!, bs, true),
      referenceGrad: ([, b], g) => [null, refMatmulGrad(a16, as, b!, bs, true, false, g)[1]],
      tol: TOL,
    });
  });

  it('a 256x320x320 product matches the CPU (relative tolerance)', async () => {
    // |values| < 1 and K = 320: f32 rounding of the sums is below 1e-5 relative to their scale (~10).
    await checkOp(await testBackend(), {
      inputs: [{ shape: [256, 320] }, { shape: [320, 320] }],
      forward: ([a, b]) => matmul(a!, b!),
      reference: ([a, b]) => refMatmul(a!, [256, 320], b!, [320, 320]),
      tol: { atol: 1e-4, rtol: 1e-4 },
    });
  }, 120_000);

  it('tiles decode from any x*y workgroup grid (the path past 65535 workgroups)', async () => {
    const backend = await testBackend();
    const [B, M, K, N] = [3, 70, 20, 130]; // 2 x 3 tiles per matrix, 18 workgroups
    const p: GemmParams = { M, N, K, transA: false, transB: false, dtypeA: 'f32', dtypeB: 'f32', bias: null, batch: { shape: [B], a: [M * K], b: [K * N] }, sum: { shape: [], a: [], b: [] } };
    const k = gemmKernel(p);
    expect(k.workgroups).toEqual([18, 1, 1]);
    // 70000 matrices of 6 tiles overflow one dimension: split over x and y
    const [x, y, z] = gemmKernel({ ...p, batch: { ...p.batch, shape: [70_000] } }).workgroups;
    expect(x <= 65535 && y > 1 && z === 1 && x * y >= 420_000).toBe(true);
    // Dispatching the small case as a 4 x 5 grid (2 spare workgroups) runs the same decode.
    const a = randomArray(B * M * K, 3), b = randomArray(B * K * N, 4);
    const ta = tensor(backend, a, [B, M, K]), tb = tensor(backend, b, [B, K, N]), out = empty(backend, [B, M, N]);
    backend.run({ ...k, workgroups: [4, 5, 1] }, [ta, tb, out].map((t) => t.binding()));
    assertClose(await out.read(), refMatmul(a, [B, M, K], b, [B, K, N]), TOL, '2-D grid');
    for (const t of [ta, tb, out]) t.dispose();
  });

  it('sizes are uniforms: every shape of a layer kind shares one pipeline source', () => {
    const none = { shape: [], a: [], b: [] };
    const at = (M: number, N: number, K: number, B: number): GemmParams => ({
      M, N, K, transA: false, transB: true, dtypeA: 'f32', dtypeB: 'f16', bias: 'f32', alpha: M / 7,
      batch: B > 1 ? { shape: [B], a: [M * K], b: [0] } : none, sum: none,
    });
    const src = gemmKernel(at(4096, 320, 320, 2)).source();
    expect(gemmKernel(at(77, 1280, 768, 3)).source()).toBe(src);
    expect(gemmKernel(at(33, 5, 7, 5)).source()).toBe(src);
    // A size-1 batch collapses away: the unbatched kernel.
    expect(gemmKernel(at(64, 64, 64, 1)).source()).toBe(gemmKernel({ ...at(64, 64, 64, 1), batch: { shape: [1], a: [4096], b: [0] } }).source());
    expect(gemmKernel({ ...at(64, 64, 64, 1), transA: true }).source()).not.toBe(gemmKernel(at(64, 64, 64, 1)).source());
  });

  it('every tile and K split the tiling may pick computes the same product (ragged, transposed, batched)', async () => {
    const backend = await testBackend();
    const [B, M, K, N] = [2, 37, 301, 45];
    const a = randomArray(B * K * M, 81), b = randomArray(B * N * K, 83);
    const ta = tensor(backend, a, [B, K, M]), tb = tensor(backend, b, [B, N, K]);
    const ref = refMatmul(a, [B, K, M], b, [B, N, K], true, true);
    for (const [tile, splits] of [[32, 1], [32, 3], [64, 2]] as const) {
      const p: GemmParams = { M, N, K, transA: true, transB: true, dtypeA: 'f32', dtypeB: 'f32', bias: null, batch: { shape: [B], a: [M * K], b: [K * N] }, sum: { shape: [], a: [], b: [] }, tile, splits };
      const ws = empty(backend, [splits, B * M * N]), out = empty(backend, [B, M, N]);
      backend.run(gemmKernel(p), [ta, tb, ws].map((t) => t.binding()));
      backend.run(splitSumKernel({ size: B * M * N, splits, bias: null, plane: 1, channels: N }), [ws, out].map((t) => t.binding()));
      assertClose(await out.read(), ref, { atol: 1e-4, rtol: 1e-4 }, `tile ${tile}, ${splits} splits`);
      for (const t of [ws, out]) t.dispose();
    }
    for (const t of [ta, tb]) t.dispose();
  });

  it('with shader-f16, f16 operands are read as array<f16>, giving exactly the unpacked path\'s results', async () => {
    const backend = await testBackend();
    const none = { shape: [], a: [], b: [] };
    const [M, N, K] = [70, 45, 77];
    const p: GemmParams = { M, N, K, transA: false, transB: true, dtypeA: 'f32', dtypeB: 'f16', bias: null, batch: none, sum: none, tile: 32 };
    expect(gemmKernel({ ...p, f16: true }).source()).toMatch(/^enable f16;[^]*array<f16>/);
    expect(gemmKernel({ ...p, dtypeB: 'f32', f16: true }).source()).toBe(gemmKernel({ ...p, dtypeB: 'f32' }).source());
    if (!nativeF16(backend)) {
      console.warn('matmul.test: this adapter lacks shader-f16; the native f16 read is checked on lavapipe (scripts/test.sh)');
      return;
    }
    // Widening f16 to f32 is exact either way and the f32 math is the same, so the outputs match bit for bit.
    const a = tensor(backend, randomArray(M * K, 91), [M, K]), b = tensor(backend, randomArray(N * K, 93), [N, K], 'f16');
    const outs = [];
    for (const f16 of [false, true]) {
      const out = empty(backend, [M, N]);
      backend.run(gemmKernel({ ...p, f16 }), [a, b, out].map((t) => t.binding()));
      outs.push(await out.read());
      out.dispose();
    }
    expect(outs[1]).toEqual(outs[0]);
    for (const t of [a, b]) t.dispose();
  });

  it('with shader-f16, the f16-tile experiment (bench-tiles --f16-tiles) equals float64 of the f16-rounded operands', async () => {
    const backend = await testBackend();
    const none = { shape: [], a: [], b: [] };
    const [M, N, K] = [40, 37, 70];
    const p: GemmParams = { M, N, K, transA: false, transB: true, dtypeA: 'f32', dtypeB: 'f16', bias: null, batch: none, sum: none, tile: 32, f16: true };
    expect(gemmKernel({ ...p, f16Tiles: 'store' }).source()).toMatch(/var<workgroup> As: array<f16, [^]*f32\(As\[/);
    if (!nativeF16(backend)) return;
    const [x, w] = [randomArray(M * K, 95), roundF16(randomArray(N * K, 96))];
    const xh = roundF16(x);
    // Products of f16 values are exact in f32 ('store'); 'mul' rounds each product to f16 (2^-11 relative).
    const ref = Float64Array.from({ length: M * N }, (_, i) => {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += xh[Math.floor(i / N) * K + k]! * w[(i % N) * K + k]!;
      return acc;
    });
    const [a, b] = [tensor(backend, x, [M, K]), tensor(backend, w, [N, K], 'f16')];
    for (const [f16Tiles, tol] of [['store', { atol: 1e-5, rtol: 1e-5 }], ['mul', { atol: 3e-3, rtol: 3e-3 }]] as const) {
      const out = empty(backend, [M, N]);
      backend.run(gemmKernel({ ...p, f16Tiles }), [a, b, out].map((t) => t.binding()));
      assertClose(await out.read(), ref, tol, `f16 tiles (${f16Tiles})`);
      out.dispose();
    }
    for (const t of [a, b]) t.dispose();
  });

  it('rejects mismatched inner dims', async () => {
    const meta = new MetaBackend();
    expect(() => matmul(empty(meta, [3, 4]), empty(meta, [5, 6]))).toThrow(/inner dims differ/);
    expect(() => matmul(empty(meta, [2, 3, 4]), empty(meta, [3, 4, 6]))).toThrow(/do not broadcast/);
  });
});

describe('matmulNaive', () => {
  const cases: [string, number[], number[], boolean, boolean][] = [
    ['ragged 37x19x53', [37, 19], [19, 53], false, false],
    ['batched broadcast, transA', [2, 1, 7, 9], [3, 7, 11], true, false],
    ['transB (linear layout)', [2, 9, 13], [11, 13], false, true],
    ['both transposed', [4, 13, 6], [4, 5, 13], true, true],
  ];
  for (const [name, as, bs, tA, tB] of cases) {
    it(name, async () => {
      await checkOp(await testBackend(), {
        inputs: [{ shape: as }, { shape: bs }],
        forward: ([a, b]) => matmulNaive(a!, b!, { transA: tA, transB: tB }),
        reference: ([a, b]) => refMatmul(a!, as, b!, bs, tA, tB),
        tol: TOL,
      });
    });
  }

  it('with a fused bias, as linear', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [3, 5, 24] }, { shape: [10, 24] }, { shape: [10] }],
      forward: ([x, w, b]) => matmulNaive(x!, w!, { transB: true, bias: b! }),
      reference: ([x, w, b]) => refLinear(x!, w!, b!, 10, 24),
      tol: TOL,
    });
  });
});

// ---- linear -----------------------------------------------------------------------------------------

describe('linear', () => {
  it('with bias over [2, 5, 24] -> 70, all gradients', async () => {
    const [I, O] = [24, 70];
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 5, I], grad: true }, { shape: [O, I], grad: true }, { shape: [O], grad: true }],
      forward: ([x, w, b]) => linear(x!, w!, b!),
      reference: ([x, w, b]) => refLinear(x!, w!, b!, O, I),
      referenceGrad: ([x, w], g) => refLinearGrad(x!, w!, g, O, I),
      tol: TOL,
    });
  });

  it('scaled in the epilogue (a LoRA up-projection times alpha / rank), with bias, all gradients', async () => {
    const [I, O, s] = [24, 70, 0.37];
    const scaled = (a: Float64Array, k: number) => a.map((v) => v * k);
    await checkOp(await testBackend(), {
      inputs: [{ shape: [3, 7, I], grad: true }, { shape: [O, I], grad: true }, { shape: [O], grad: true }],
      forward: ([x, w, b]) => linear(x!, w!, b!, s),
      // s (x w^T) + b: the bias is not scaled; dX and dW carry s, dBias does not
      reference: ([x, w, b]) => scaled(refLinear(x!, w!, null, O, I), s).map((v, i) => v + b![i % O]!),
      referenceGrad: ([x, w], g) => {
        const [dx, dw, db] = refLinearGrad(x!, w!, g, O, I);
        return [scaled(dx!, s), scaled(dw!, s), db!];
      },
      tol: TOL,
    });
  });

  it('without bias, ragged multi-tile 130 rows x 40 -> 67', async () => {
    const [I, O] = [40, 67];
    await checkOp(await testBackend(), {
      inputs: [{ shape: [130, I], grad: true }, { shape: [O, I], grad: true }],
      forward: ([x, w]) => linear(x!, w!),
      reference: ([x, w]) => refLinear(x!, w!, null, O, I),
      referenceGrad: ([x, w], g) => refLinearGrad(x!, w!, g, O, I).slice(0, 2),
      tol: TOL,
      gradTol: { atol: 3e-5, rtol: 1e-5 },
    });
  });

  it('frozen f16 weight without bias: gradient to x only', async () => {
    const [R, I, O] = [66, 17, 9];
    const w = randomArray(O * I, 17);
    const w16 = Float64Array.from(roundF16(w));
    await checkOp(await testBackend(), {
      inputs: [{ shape: [R, I], grad: true }, { shape: [O, I], data: w, dtype: 'f16' }],
      forward: ([x, ww]) => linear(x!, ww!),
      reference: ([x]) => refLinear(x!, w16, null, O, I),
      referenceGrad: ([x], g) => [refLinearGrad(x!, w16, g, O, I)[0], null],
      tol: TOL,
    });
  });

  it('frozen f16 weight and f16 bias, trainable x of rank 1', async () => {
    const [I, O] = [33, 20];
    const w = randomArray(O * I, 23), b = randomArray(O, 29);
    const w16 = Float64Array.from(roundF16(w)), b16 = Float64Array.from(roundF16(b));
    await checkOp(await testBackend(), {
      inputs: [{ shape: [I], grad: true }, { shape: [O, I], data: w, dtype: 'f16' }, { shape: [O], data: b, dtype: 'f16' }],
      forward: ([x, ww, bb]) => linear(x!, ww!, bb!),
      reference: ([x]) => refLinear(x!, w16, b16, O, I),
      referenceGrad: ([x], g) => [refLinearGrad(x!, w16, g, O, I)[0], null, null],
      tol: TOL,
    });
  });

  it('frozen weight: no gradient GEMM for it and its input is not kept (meta device)', () => {
    const meta = new MetaBackend();
    const [R, I, O] = [64, 32, 16];
    const x = param(meta, [], [R, I]);
    const w = empty(meta, [O, I], 'f16');
    const b = param(meta, [], [O]);
    const y = linear(x, w, b);
    // backward of linear reads w only (dX = dY w), so x is not held by the tape
    x.dispose();
    expect(x.disposed).toBe(true);
    const loss = sum(y);
    backward(loss);
    const mm = meta.stats.byKernel.get('matmul')!;
    expect(mm.dispatches).toBe(2); // forward and dX, no dW
    expect(mm.flops).toBe(2 * (2 * R * I * O) + R * O); // two GEMMs plus the fused bias add
    expect(w.grad).toBeNull();
    expect(b.grad?.shape).toEqual([O]);
    for (const t of [y, loss, w, b]) t.dispose();
  });

  it('trainable weight of a batched input: dW is one GEMM over all rows (meta device)', () => {
    const meta = new MetaBackend();
    const [B, T, I, O] = [4, 77, 32, 8];
    const x = empty(meta, [B, T, I]);
    const w = param(meta, [], [O, I]);
    const y = linear(x, w);
    const loss = sum(y);
    backward(loss);
    const mm = meta.stats.byKernel.get('matmul')!;
    expect(mm.dispatches).toBe(2); // forward and dW, no dX for a frozen input
    expect(mm.flops).toBe(2 * (2 * B * T * I * O));
    expect(w.grad?.shape).toEqual([O, I]);
    for (const t of [x, y, loss, w]) t.dispose();
  });

  it('residual in the epilogue (base output + LoRA up-projection), scaled, with bias, all gradients', async () => {
    const [I, O, s] = [24, 70, 0.37];
    await checkOp(await testBackend(), {
      inputs: [{ shape: [3, 7, I], grad: true }, { shape: [O, I], grad: true }, { shape: [O], grad: true }, { shape: [3, 7, O], grad: true }],
      forward: ([x, w, b, r]) => linear(x!, w!, b!, s, r!),
      reference: ([x, w, b, r]) => refLinear(x!, w!, null, O, I).map((v, i) => s * v + b![i % O]! + r![i]!),
      referenceGrad: ([x, w], g) => {
        const [dx, dw, db] = refLinearGrad(x!, w!, g, O, I);
        return [dx!.map((v) => v * s), dw!.map((v) => v * s), db!, g];
      },
      tol: TOL,
    });
  });

  it('residual fused: one GEMM dispatch, no separate add (meta device)', () => {
    const meta = new MetaBackend();
    const x = empty(meta, [77, 32]), w = empty(meta, [16, 32], 'f16'), r = empty(meta, [77, 16]);
    const y = linear(x, w, undefined, 1, r);
    expect([...meta.stats.byKernel.keys()]).toEqual(['matmul']);
    expect(meta.stats.byKernel.get('matmul')!.dispatches).toBe(1);
    expect(() => linear(x, w, undefined, 1, empty(meta, [77, 15]))).toThrow(/not the output's shape/);
    for (const t of [x, w, r, y]) t.dispose();
  });

  it('split-K (few tiles, long K: a LoRA up/down and its weight gradient) with scale, bias and residual, all gradients', async () => {
    // The forward [6, 40] over K = 600 is two 32-tiles, so K is cut in 2 and the split-sum adds the bias and residual.
    const [R, I, O, s] = [6, 600, 40, 0.5];
    const keep = gemmThresholds.splitBelow;
    gemmThresholds.splitBelow = 64; // off by default on the measured adapter: force the path
    onTestFinished(() => void (gemmThresholds.splitBelow = keep));
    expect(gemmTiling(R, O, I).splits).toBeGreaterThan(1);
    await checkOp(await testBackend(), {
      inputs: [{ shape: [R, I], grad: true }, { shape: [O, I], grad: true }, { shape: [O], grad: true }, { shape: [R, O], grad: true }],
      forward: ([x, w, b, r]) => linear(x!, w!, b!, s, r!),
      reference: ([x, w, b, r]) => refLinear(x!, w!, null, O, I).map((v, i) => s * v + b![i % O]! + r![i]!),
      referenceGrad: ([x, w], g) => {
        const [dx, dw, db] = refLinearGrad(x!, w!, g, O, I);
        return [dx!.map((v) => v * s), dw!.map((v) => v * s), db!, g];
      },
      tol: { atol: 1e-4, rtol: 1e-4 },
    });
  });

  it('split-K weight gradient over many rows accumulates in place (linearInto-style dW)', async () => {
    const backend = await testBackend();
    const [Rows, I, O] = [2048, 24, 8];
    const keep = gemmThresholds.splitBelow;
    gemmThresholds.splitBelow = 64;
    onTestFinished(() => void (gemmThresholds.splitBelow = keep));
    expect(gemmTiling(O, I, Rows).splits).toBeGreaterThan(1);
    const g = randomArray(Rows * O, 71), x = randomArray(Rows * I, 73), o0 = randomArray(O * I, 79);
    const [tg, tx, out] = [tensor(backend, g, [Rows, O]), tensor(backend, x, [Rows, I]), tensor(backend, o0, [O, I])];
    matmulInto(out, tg, tx, { transA: true });
    assertClose(await out.read(), refMatmul(g, [Rows, O], x, [Rows, I], true, false).map((v, i) => v + o0[i]!), { atol: 1e-4, rtol: 1e-4 }, 'split dW');
    for (const t of [tg, tx, out]) t.dispose();
  });

  it('linearInto adds scale * x w^T into an existing tensor, in place', async () => {
    const backend = await testBackend();
    const [R, I, O, s] = [70, 19, 67, -0.5];
    const x = randomArray(R * I, 41), w = randomArray(O * I, 43), o0 = randomArray(R * O, 47);
    const [tx, tw, out] = [tensor(backend, x, [R, I]), tensor(backend, w, [O, I], 'f16'), tensor(backend, o0, [R, O])];
    noGrad(() => linearInto(out, tx, tw, s));
    const w16 = Float64Array.from(roundF16(w));
    assertClose(await out.read(), refLinear(x, w16, null, O, I).map((v, i) => o0[i]! + s * v), TOL, 'linearInto');
    for (const t of [tx, tw, out]) t.dispose();
  });

  it('matmulInto accumulates a transposed, batch-summed product (a weight gradient) into an f32 tensor', async () => {
    const backend = await testBackend();
    // dW [K2, N] += A^T B over 3 batches of 33 rows: the batch folds into the contraction.
    const [B, R, M, N] = [3, 33, 21, 18];
    const a = randomArray(B * R * M, 51), b = randomArray(B * R * N, 53), o0 = randomArray(M * N, 57);
    const [ta, tb, out] = [tensor(backend, a, [B, R, M]), tensor(backend, b, [B, R, N]), tensor(backend, o0, [M, N])];
    matmulInto(out, ta, tb, { transA: true, alpha: 2 });
    const ref = refMatmul(a, [B * R, M], b, [B * R, N], true, false);
    assertClose(await out.read(), ref.map((v, i) => o0[i]! + 2 * v), TOL, 'matmulInto');
    for (const t of [ta, tb, out]) t.dispose();
  });

  it('folded dropout (on A, on B, on the product, offset into a larger mask) gives the separate dropout op\'s results bit for bit', async () => {
    const backend = await testBackend();
    const [B, M, K, N, p, seed] = [2, 37, 19, 53, 0.3, 91];
    const a = randomArray(B * K * M, 61), b = randomArray(B * N * K, 63);
    // A stored [B, K, M] (transA) and B [B, N, K] (transB): the mask follows the stored element order.
    const [ta, tb] = [tensor(backend, a, [B, K, M]), tensor(backend, b, [B, N, K])];
    const t = { transA: true, transB: true };
    const same = async (got: Tensor, want: Tensor, what: string) => {
      const [g, w] = [await got.read(), await want.read()];
      expect(Array.from(g), what).toEqual(Array.from(w));
      for (const x of [got, want]) x.dispose();
    };
    const plain = await matmul(ta, tb, t).read();
    const onA = matmulDropped(ta, tb, { on: 'a', p, seed }, t);
    expect(Array.from(await onA.read())).not.toEqual(Array.from(plain)); // the mask mattered
    await same(onA, matmul(dropout(ta, p, seed), tb, t), 'mask on A');
    await same(matmulDropped(ta, tb, { on: 'b', p, seed }, t), matmul(ta, dropout(tb, p, seed), t), 'mask on B');
    await same(matmulDropped(ta, tb, { on: 'out', p, seed }, t), dropout(matmul(ta, tb, t), p, seed), 'mask on the product');
    // The second of A's matrices alone, offset by the first's elements, draws that half of A's mask.
    const half = tensor(backend, a.subarray(K * M), [K, M]);
    const dropped = tensor(backend, (await dropout(ta, p, seed).read()).subarray(K * M), [K, M]);
    const b0 = tensor(backend, b.subarray(0, N * K), [N, K]);
    await same(matmulDropped(half, b0, { on: 'a', p, seed, offset: K * M }, t), matmul(dropped, b0, t), 'offset mask');
    for (const x of [ta, tb, half, dropped, b0]) x.dispose();
  });

  it('two K terms in one GEMM (linearPlus, matmulPlus): f16 base weight, bias, residual, scaled and masked second term, added into', async () => {
    const backend = await testBackend();
    // Ragged: 70 rows, 37 in, 53 out, rank 5 (the second term's K), several tiles in each direction.
    const [Rw, In, Out, Rk, s, p, seed] = [70, 37, 53, 5, 0.75, 0.3, 17];
    const [x, w, bias, res, h, up] = [[Rw, In], [Out, In], [Out], [Rw, Out], [Rw, Rk], [Out, Rk]].map((sh, i) => Float64Array.from(randomArray(prod(sh), 101 + i)));
    const wq = Float64Array.from(roundF16(w!));
    const t = (a: Float64Array, sh: number[], d: 'f32' | 'f16' = 'f32') => tensor(backend, a, sh, d);
    const [tx, tw, tb, tr, th, tu] = [t(x!, [Rw, In]), t(wq, [Out, In], 'f16'), t(bias!, [Out]), t(res!, [Rw, Out]), t(h!, [Rw, Rk]), t(up!, [Out, Rk])];
    const lin = (hv: Float64Array) => {
      const base = refLinear(x!, wq, bias!, Out, In);
      const low = refMatmul(hv, [Rw, Rk], up!, [Out, Rk], false, true);
      return base.map((v, i) => v + res![i]! + s * low[i]!);
    };
    const y = linearPlus(tx, tw, { a: th, b: tu, transB: true, scale: s }, tb, tr);
    assertClose(await y.read(), lin(h!), TOL, 'linearPlus');
    // The mask on the second term's A at an offset draws that part of dropout's mask over a larger tensor.
    const big = t(Float64Array.from([...h!, ...h!]), [2, Rw, Rk]);
    const hd = Float64Array.from((await dropout(big, p, seed).read()).subarray(Rw * Rk));
    const yd = linearPlus(tx, tw, { a: th, b: tu, transB: true, scale: s, drop: { p, seed, offset: Rw * Rk } }, tb, tr);
    assertClose(await yd.read(), lin(hd), TOL, 'linearPlus, masked');
    expect(hd.some((v, i) => v !== h![i])).toBe(true); // the mask mattered
    // dX = gY w + s gH down, added into what is there; the second term read transposed.
    const [g, gh] = [tensor(backend, randomArray(Rw * Out, 120), [Rw, Out]), Float64Array.from(randomArray(Rk * Rw, 121))];
    const down = Float64Array.from(randomArray(Rk * In, 122));
    const into = tensor(backend, randomArray(Rw * In, 123), [Rw, In]);
    const before = await into.read();
    const [tgh, td] = [t(gh, [Rk, Rw]), t(down, [Rk, In])];
    const out = matmulPlus(g, tw, { a: tgh, b: td, transA: true, scale: s }, into);
    expect(out).toBe(into);
    const gd = Float64Array.from(await g.read());
    const low = refMatmul(gh, [Rk, Rw], down, [Rk, In], true, false);
    const want = refMatmul(gd, [Rw, Out], wq, [Out, In]).map((v, i) => v + s * low[i]! + before[i]!);
    assertClose(await into.read(), want, TOL, 'matmulPlus into');
    expect(() => matmulPlus(g, tw, { a: td, b: td })).toThrow(/does not make/);
    for (const z of [tx, tw, tb, tr, th, tu, y, yd, big, g, into, tgh, td]) z.dispose();
  });

  it('two K terms: one dispatch, and masked and unmasked second terms share one pipeline (meta device)', () => {
    const meta = new MetaBackend();
    const [x, w, h, up] = [empty(meta, [64, 32]), empty(meta, [48, 32], 'f16'), empty(meta, [64, 4]), empty(meta, [48, 4])];
    meta.recordSources = true;
    meta.resetStats();
    linearPlus(x, w, { a: h, b: up, transB: true, scale: 2 }).dispose();
    linearPlus(x, w, { a: h, b: up, transB: true, scale: 2, drop: { p: 0.1, seed: 1 } }).dispose();
    expect(meta.stats.dispatches).toBe(2);
    expect(meta.sources.size).toBe(1);
    for (const t of [x, w, h, up]) t.dispose();
  });

  it('a GEMM pair (two independent GEMMs in one dispatch) gives each GEMM\'s own results bit for bit', async () => {
    const backend = await testBackend();
    // A LoRA backward's two pairs at ragged sizes: gH = drop(gY up) with dUp += s gY^T h (masked B, into), then
    // dX = gY w + s gH down (f16 w, two K terms) with dDown += s gH^T x (into). Different shapes, transposes and tiles.
    const [Rw, In, Out, Rk, s, p, seed] = [70, 37, 53, 5, 0.75, 0.3, 29];
    const r = (sh: number[], i: number, d: 'f32' | 'f16' = 'f32') => tensor(backend, randomArray(prod(sh), 140 + i), sh, d);
    const [g, up, h, w, x, gh, down] = [r([Rw, Out], 0), r([Out, Rk], 1), r([Rw, Rk], 2), r([Out, In], 3, 'f16'), r([Rw, In], 4), r([Rw, Rk], 5), r([Rk, In], 6)];
    const fresh = async (sh: number[], i: number) => r(sh, 10 + i);
    const pairs: [() => Promise<PairGemm>, () => Promise<PairGemm>][] = [
      [async () => ({ a: g, b: up, drop: { on: 'out', p, seed } }), async () => ({ a: g, b: h, transA: true, alpha: s, drop: { on: 'b', p, seed }, into: await fresh([Out, Rk], 0) })],
      [async () => ({ a: g, b: w, plus: { a: gh, b: down, scale: s } }), async () => ({ a: gh, b: x, transA: true, alpha: s, into: await fresh([Rk, In], 1) })],
      [async () => ({ a: x, b: down, transB: true, into: await fresh([Rw, Rk], 2) }), async () => ({ a: g, b: w })],
    ];
    for (const [k, [mk0, mk1]] of pairs.entries()) {
      const [a0, a1] = [await mk0(), await mk1()];
      const [b0, b1] = [await mk0(), await mk1()];
      const [p0, p1] = matmulPair(a0, a1);
      const [s0] = matmulPair(b0, null);
      const [, s1] = matmulPair(null, b1);
      expect(Array.from(await p0!.read()), `pair ${k}, first`).toEqual(Array.from(await s0!.read()));
      expect(Array.from(await p1!.read()), `pair ${k}, second`).toEqual(Array.from(await s1!.read()));
      for (const t of [p0, p1, s0, s1]) t!.dispose();
    }
    // The pair is not the identity of either alone: the first output of pair 0 differs from an unmasked gY up.
    const plain = matmul(g, up);
    const [masked] = matmulPair({ a: g, b: up, drop: { on: 'out', p, seed } }, null);
    expect(Array.from(await masked!.read())).not.toEqual(Array.from(await plain.read()));
    for (const t of [g, up, h, w, x, gh, down, plain, masked!]) t.dispose();
  });

  it('a GEMM pair is one dispatch (meta device)', () => {
    const meta = new MetaBackend();
    const [g, up, h] = [empty(meta, [64, 48]), empty(meta, [48, 4]), empty(meta, [64, 4])];
    meta.resetStats();
    const [a, b] = matmulPair({ a: g, b: up }, { a: g, b: h, transA: true });
    expect(meta.stats.dispatches).toBe(1);
    expect([a!.shape, b!.shape]).toEqual([[64, 4], [48, 4]]);
    for (const t of [g, up, h, a!, b!]) t.dispose();
  });

  it('in-place adds refuse tensors the tape could see', () => {
    const meta = new MetaBackend();
    const x = param(meta, [], [4, 8]), w = empty(meta, [3, 8]), out = empty(meta, [4, 3]);
    expect(() => linearInto(out, x, w)).toThrow(/not differentiable/);
    expect(() => linearInto(empty(meta, [4, 4]), empty(meta, [4, 8]), w)).toThrow(/not the output's shape/);
    for (const t of [x, w, out]) t.dispose();
  });
});
