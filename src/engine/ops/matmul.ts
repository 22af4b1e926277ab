// Batched matmul and linear layers on the tiled GEMM, forward and backward side by side.
import { noGrad, record, type BackwardRule } from '../autograd.js';
import { gemmKernel, gemmNaiveKernel, type GemmSpec } from '../kernels/gemm.js';
import { broadcastIndex, input, output } from '../kernels/wgsl.js';
import type { Tensor } from '../tensor.js';
import { reduceTo } from './elementwise.js';
import { broadcastShapes, broadcastStrides, check, emptyLike, launch } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    matmul: { a: Tensor; b: Tensor; transA: boolean; transB: boolean };
    linear: { x: Tensor; w: Tensor; hasBias: boolean };
  }
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

interface MatmulPlan {
  spec: GemmSpec;
  outShape: number[];
}

function planMatmul(a: Tensor, b: Tensor, o: MatmulOptions): MatmulPlan {
  check(a.rank >= 2 && b.rank >= 2, () => `matmul needs rank >= 2 operands, got [${a.shape}] and [${b.shape}]`);
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const [M, K] = o.transA ? [ac, ar] : [ar, ac];
  const [K2, N] = o.transB ? [bc, br] : [br, bc];
  check(K === K2, () => `matmul: inner dimensions differ: [${a.shape}]${o.transA ? 'ᵀ' : ''} x [${b.shape}]${o.transB ? 'ᵀ' : ''}`);
  const batchShape = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = batchShape.reduce((x, y) => x * y, 1);
  const aOff = broadcastIndex('b', batchShape, broadcastStrides(a.shape.slice(0, -2), batchShape).map((s) => s * ar * ac));
  const bOff = broadcastIndex('b', batchShape, broadcastStrides(b.shape.slice(0, -2), batchShape).map((s) => s * br * bc));
  const spec: GemmSpec = {
    name: 'matmul',
    M,
    N,
    K,
    batch,
    decls: `${input('a', 0, a.dtype)}\n${input('bm', 1, b.dtype)}\n${output('out', 2)}`,
    loadA: `ld_a(${aOff} + ${o.transA ? `k * ${M}u + m` : `m * ${K}u + k`})`,
    loadB: `ld_bm(${bOff} + ${o.transB ? `n * ${K}u + k` : `k * ${N}u + n`})`,
    aFastK: !o.transA,
    bFastN: !o.transB,
    store: `out[b * ${M * N}u + m * ${N}u + n] = v;`,
    bytes: 0,
  };
  return { spec, outShape: [...batchShape, M, N] };
}

/** C = op(A) op(B) over broadcast batch dims; a [..., M, K] (or [..., K, M] with transA), b [..., K, N] (or [..., N, K]). */
export function matmul(a: Tensor, b: Tensor, o: MatmulOptions = {}): Tensor {
  const { spec, outShape } = planMatmul(a, b, o);
  const out = emptyLike(a, outShape);
  launch(gemmKernel(spec), [a, b], [out]);
  record('matmul', [a, b], [out], { a, b, transA: !!o.transA, transB: !!o.transB }, [a, b]);
  return out;
}

/** The same product with one thread per output and no tiling: the benchmark's baseline. */
export function matmulNaive(a: Tensor, b: Tensor, o: MatmulOptions = {}): Tensor {
  const { spec, outShape } = planMatmul(a, b, o);
  const out = emptyLike(a, outShape);
  launch(gemmNaiveKernel(spec), [a, b], [out]);
  return out;
}

// d op(A) = dC op(B)ᵀ and d op(B) = op(A)ᵀ dC, transposed back when the operand was transposed,
// then summed over the batch dims the operand was broadcast along.
const matmulBackward: BackwardRule<'matmul'> = ({ a, b, transA, transB }, [g], needs) => [
  needs[0] ? reduceTo(transA ? matmul(b, g!, { transA: transB, transB: true }) : matmul(g!, b, { transB: !transB }), a.shape) : null,
  needs[1] ? reduceTo(transB ? matmul(g!, a, { transA: true, transB: transA }) : matmul(a, g!, { transA: !transA }), b.shape) : null,
];

function linearSpec(name: string, rows: number, x: Tensor, w: Tensor, bias: Tensor | undefined, naive = false): GemmSpec {
  const [out, inp] = w.shape as [number, number];
  void naive;
  return {
    name,
    M: rows,
    N: out,
    K: inp,
    batch: 1,
    decls: `${input('x', 0, x.dtype)}\n${input('w', 1, w.dtype)}\n${bias ? input('bias', 2, bias.dtype) : ''}\n${output('y', bias ? 3 : 2)}`,
    loadA: `ld_x(m * ${inp}u + k)`,
    loadB: `ld_w(n * ${inp}u + k)`,
    aFastK: true,
    bFastN: false,
    store: `y[m * ${out}u + n] = v${bias ? ' + ld_bias(n)' : ''};`,
    bytes: 0,
  };
}

/** PyTorch's linear: y = x wᵀ + bias, with x [..., in], w [out, in] (any storage dtype), bias [out]. */
export function linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
  check(w.rank === 2 && x.shape[x.rank - 1] === w.shape[1], () => `linear: input [${x.shape}] does not match weight [${w.shape}]`);
  check(!bias || (bias.rank === 1 && bias.shape[0] === w.shape[0]), () => `linear: bias [${bias!.shape}] does not match weight [${w.shape}]`);
  const rows = x.size / w.shape[1]!;
  const y = emptyLike(x, [...x.shape.slice(0, -1), w.shape[0]!]);
  launch(gemmKernel(linearSpec('linear', rows, x, w, bias)), bias ? [x, w, bias] : [x, w], [y]);
  record('linear', [x, w, bias ?? null], [y], { x, w, hasBias: !!bias }, [x, w]);
  return y;
}

// y [R, out] = x [R, in] wᵀ:  dx [R, in] = dy w;  dw [out, in] = dyᵀ x;  dbias [out] = Σ_R dy.
const linearBackward: BackwardRule<'linear'> = ({ x, w }, [g], needs) => {
  const [out, inp] = w.shape as [number, number];
  const rows = x.size / inp;
  return noGrad(() => {
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    if (needs[0]) {
      dx = emptyLike(x);
      const spec: GemmSpec = {
        name: 'linear_dx',
        M: rows,
        N: inp,
        K: out,
        batch: 1,
        decls: `${input('g', 0)}\n${input('w', 1, w.dtype)}\n${output('dx', 2)}`,
        loadA: `ld_g(m * ${out}u + k)`,
        loadB: `ld_w(k * ${inp}u + n)`,
        aFastK: true,
        bFastN: true,
        store: `dx[m * ${inp}u + n] = v;`,
        bytes: 0,
      };
      launch(gemmKernel(spec), [g!, w], [dx]);
    }
    if (needs[1]) {
      dw = emptyLike(w, w.shape);
      const spec: GemmSpec = {
        name: 'linear_dw',
        M: out,
        N: inp,
        K: rows,
        batch: 1,
        decls: `${input('g', 0)}\n${input('x', 1, x.dtype)}\n${output('dw', 2)}`,
        loadA: `ld_g(k * ${out}u + m)`,
        loadB: `ld_x(k * ${inp}u + n)`,
        aFastK: false,
        bFastN: true,
        store: `dw[m * ${inp}u + n] = v;`,
        bytes: 0,
      };
      launch(gemmKernel(spec), [g!, x], [dw]);
    }
    const db = needs[2] ? reduceTo(g!, [out]) : null;
    return [dx, dw, db];
  });
};

export const matmulRules = { matmul: matmulBackward, linear: linearBackward };
