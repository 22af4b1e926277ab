// Our forward ops on real WebGPU against ONNX Runtime (onnxruntime-web's CPU/wasm execution provider)
// running the same computation as a small ONNX graph: an implementation we did not write.
// Node only: the browser project skips it (ORT's wasm loads from node_modules here).
import { beforeAll, describe, expect, it } from 'vitest';
import type * as Ort from 'onnxruntime-web';
import { noGrad } from '../autograd.js';
import { assertClose, randomArray, type Tolerance } from '../testing/allclose.js';
import { testBackend } from '../testing/gpu.js';
import { onnxModel, type OnnxGraph, type OnnxInitializer, type OnnxNode } from '../testing/onnx.js';
import { scope, tensor, type Tensor } from '../tensor.js';
import { attention } from './attention.js';
import { conv2d, upsampleNearest2x } from './conv.js';
import { add, gelu } from './elementwise.js';
import { linear, matmul } from './matmul.js';
import { groupNorm, layerNorm } from './norm.js';
import { softmax } from './softmax.js';

const inNode = typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined';

// Both sides compute in f32 with different summation orders (and ORT's MLAS uses FMA and its own
// exp/erf): a few ulps per accumulated product. atol 1e-4 on values of order 1, rtol 1e-3 on larger.
const TOL: Tolerance = { atol: 1e-4, rtol: 1e-3 };

interface Input {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** Uniform [lo, hi) values from `seed`, rounded to f32 so both sides see identical inputs. */
function input(name: string, shape: number[], seed: number, lo = -1, hi = 1): Input {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, shape, data: Float32Array.from(randomArray(n, seed, lo, hi)) };
}

let ort: typeof Ort;

/** Run `nodes` in ONNX Runtime with `feeds` as the graph inputs; returns output `y` and its dims. */
async function runOrt(
  nodes: OnnxNode[],
  feeds: Input[],
  outShape: number[],
  extra: { initializers?: OnnxInitializer[]; opset?: number; irVersion?: number } = {},
): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const g: OnnxGraph = {
    nodes,
    inputs: feeds.map((f) => ({ name: f.name, shape: f.shape })),
    outputs: [{ name: 'y', shape: outShape }],
    ...extra,
  };
  const session = await ort.InferenceSession.create(onnxModel(g), { executionProviders: ['wasm'], graphOptimizationLevel: 'disabled' });
  try {
    const out = await session.run(Object.fromEntries(feeds.map((f) => [f.name, new ort.Tensor('float32', f.data, f.shape)])));
    const y = out.y!;
    return { data: y.data as Float32Array, dims: y.dims };
  } finally {
    await session.release();
  }
}

/** Run our op on the shared WebGPU device with `inputs` uploaded as f32 tensors; returns y and its shape. */
async function runOurs(inputs: Input[], fn: (xs: Tensor[]) => Tensor): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const backend = await testBackend();
  const xs = inputs.map((i) => tensor(backend, i.data, i.shape));
  const y = noGrad(() => scope(() => fn(xs)));
  try {
    return { data: await y.read(), dims: y.shape };
  } finally {
    y.dispose();
    for (const x of xs) x.dispose();
  }
}

/** Both sides, same shape, values within `tol`. */
async function compareWithOrt(
  what: string,
  inputs: Input[],
  ours: (xs: Tensor[]) => Tensor,
  nodes: OnnxNode[],
  outShape: number[],
  extra: Parameters<typeof runOrt>[3] = {},
  tol: Tolerance = TOL,
): Promise<void> {
  const ref = await runOrt(nodes, inputs, outShape, extra);
  const got = await runOurs(inputs, ours);
  expect([...ref.dims]).toEqual(outShape);
  expect([...got.dims]).toEqual(outShape);
  assertClose(got.data, ref.data, tol, what);
}

describe.skipIf(!inNode)('forward ops vs ONNX Runtime (wasm CPU EP)', () => {
  beforeAll(async () => {
    // A specifier Vite cannot see: the browser project would otherwise pre-bundle ORT mid-run for a
    // file it skips. Node resolves it through the package's "node" export (dist/ort.node.min.mjs).
    const specifier = 'onnxruntime-web';
    ort = (await import(/* @vite-ignore */ specifier)) as typeof Ort;
    // Single-threaded wasm: no worker threads, deterministic and light on the 2 CI cores.
    ort.env.wasm.numThreads = 1;
    ort.env.logLevel = 'error';
  });

  it('Conv 3x3 stride 2 with pads [0, 0, 1, 1] (VAE downsampler) and bias', async () => {
    // ONNX pads are [top, left, bottom, right]; ours [top, bottom, left, right]. Odd H: the bottom
    // pad row is never reached; even W: the right pad column is.
    const x = input('x', [2, 8, 9, 10], 1);
    const w = input('w', [6, 8, 3, 3], 2);
    const b = input('b', [6], 3);
    await compareWithOrt(
      'conv 3x3 s2',
      [x, w, b],
      ([x_, w_, b_]) => conv2d(x_!, w_!, b_!, { stride: 2, padding: [0, 1, 0, 1] }),
      [{ op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['y'], attrs: { kernel_shape: { ints: [3, 3] }, strides: { ints: [2, 2] }, pads: { ints: [0, 0, 1, 1] } } }],
      [2, 6, 4, 5],
    );
  });

  it('Conv 1x1 with bias', async () => {
    const x = input('x', [2, 16, 5, 7], 4);
    const w = input('w', [12, 16, 1, 1], 5);
    const b = input('b', [12], 6);
    await compareWithOrt(
      'conv 1x1',
      [x, w, b],
      ([x_, w_, b_]) => conv2d(x_!, w_!, b_!),
      [{ op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['y'], attrs: { kernel_shape: { ints: [1, 1] } } }],
      [2, 12, 5, 7],
    );
  });

  it('GroupNormalization (opset 21: per-channel scale and bias) vs groupNorm', async () => {
    // Opset 17 has no GroupNormalization; opset 18's scales per group (deprecated), 21's per channel
    // as PyTorch and we do. Inputs shifted off zero so the mean matters.
    const x = input('x', [2, 12, 5, 6], 7, -0.5, 2.5);
    const s = input('s', [12], 8, 0.5, 1.5);
    const b = input('b', [12], 9);
    await compareWithOrt(
      'group norm',
      [x, s, b],
      ([x_, s_, b_]) => groupNorm(x_!, 4, s_!, b_!, 1e-5),
      [{ op: 'GroupNormalization', inputs: ['x', 's', 'b'], outputs: ['y'], attrs: { num_groups: { i: 4 }, epsilon: { f: 1e-5 } } }],
      [2, 12, 5, 6],
      { opset: 21, irVersion: 10 },
    );
  });

  it('LayerNormalization (opset 17, last axis) vs layerNorm', async () => {
    const x = input('x', [2, 7, 40], 10, -1, 3);
    const s = input('s', [40], 11, 0.5, 1.5);
    const b = input('b', [40], 12);
    await compareWithOrt(
      'layer norm',
      [x, s, b],
      ([x_, s_, b_]) => layerNorm(x_!, s_!, b_!, 1e-5),
      [{ op: 'LayerNormalization', inputs: ['x', 's', 'b'], outputs: ['y'], attrs: { axis: { i: -1 }, epsilon: { f: 1e-5 } } }],
      [2, 7, 40],
    );
  });

  it('MatMul with batch broadcasting, plus Add bias, vs matmul + add', async () => {
    // a [2, 3, 5, 16] times b [3, 16, 12]: b broadcast over the leading 2.
    const a = input('a', [2, 3, 5, 16], 13);
    const bm = input('bm', [3, 16, 12], 14);
    const bias = input('bias', [12], 15);
    await compareWithOrt(
      'matmul + bias',
      [a, bm, bias],
      ([a_, b_, c_]) => add(matmul(a_!, b_!), c_!),
      [
        { op: 'MatMul', inputs: ['a', 'bm'], outputs: ['ab'] },
        { op: 'Add', inputs: ['ab', 'bias'], outputs: ['y'] },
      ],
      [2, 3, 5, 12],
    );
  });

  it('MatMul with the transposed weight, plus Add bias, vs linear', async () => {
    const x = input('x', [2, 9, 24], 16);
    const w = input('w', [20, 24], 17);
    const b = input('b', [20], 18);
    await compareWithOrt(
      'linear',
      [x, w, b],
      ([x_, w_, b_]) => linear(x_!, w_!, b_!),
      [
        { op: 'Transpose', inputs: ['w'], outputs: ['wt'], attrs: { perm: { ints: [1, 0] } } },
        { op: 'MatMul', inputs: ['x', 'wt'], outputs: ['xw'] },
        { op: 'Add', inputs: ['xw', 'b'], outputs: ['y'] },
      ],
      [2, 9, 20],
    );
  });

  it('Softmax (axis -1) vs softmax', async () => {
    const x = input('x', [3, 4, 77], 19, -6, 6);
    await compareWithOrt(
      'softmax',
      [x],
      ([x_]) => softmax(x_!, -1),
      [{ op: 'Softmax', inputs: ['x'], outputs: ['y'], attrs: { axis: { i: -1 } } }],
      [3, 4, 77],
      {},
      // Probabilities at most 1: the general tolerance would hide a 0.1% scale error here.
      { atol: 1e-6, rtol: 1e-5 },
    );
  });

  it('scaled-dot-product cross-attention composed in ONNX (2 heads) vs attention', async () => {
    // q [B, Nq, H·D] from image tokens, k and v [B, Nk, H·D] from a text context of another length.
    const B = 2;
    const H = 2;
    const D = 40;
    const Nq = 64;
    const Nk = 77;
    const q = input('q', [B, Nq, H * D], 20, -1.5, 1.5);
    const k = input('k', [B, Nk, H * D], 21, -1.5, 1.5);
    const v = input('v', [B, Nk, H * D], 22);
    const scale = 1 / Math.sqrt(D);
    const nodes: OnnxNode[] = [
      { op: 'Reshape', inputs: ['q', 'q_shape'], outputs: ['q4'] },
      { op: 'Transpose', inputs: ['q4'], outputs: ['qh'], attrs: { perm: { ints: [0, 2, 1, 3] } } }, // [B, H, Nq, D]
      { op: 'Reshape', inputs: ['k', 'kv_shape'], outputs: ['k4'] },
      { op: 'Transpose', inputs: ['k4'], outputs: ['kt'], attrs: { perm: { ints: [0, 2, 3, 1] } } }, // [B, H, D, Nk]
      { op: 'Reshape', inputs: ['v', 'kv_shape'], outputs: ['v4'] },
      { op: 'Transpose', inputs: ['v4'], outputs: ['vh'], attrs: { perm: { ints: [0, 2, 1, 3] } } }, // [B, H, Nk, D]
      { op: 'MatMul', inputs: ['qh', 'kt'], outputs: ['s'] }, // [B, H, Nq, Nk]
      { op: 'Mul', inputs: ['s', 'scale'], outputs: ['ss'] },
      { op: 'Softmax', inputs: ['ss'], outputs: ['p'], attrs: { axis: { i: -1 } } },
      { op: 'MatMul', inputs: ['p', 'vh'], outputs: ['o'] }, // [B, H, Nq, D]
      { op: 'Transpose', inputs: ['o'], outputs: ['ot'], attrs: { perm: { ints: [0, 2, 1, 3] } } }, // [B, Nq, H, D]
      { op: 'Reshape', inputs: ['ot', 'o_shape'], outputs: ['y'] },
    ];
    const initializers: OnnxInitializer[] = [
      { name: 'q_shape', shape: [4], data: [B, Nq, H, D], type: 'int64' },
      { name: 'kv_shape', shape: [4], data: [B, Nk, H, D], type: 'int64' },
      { name: 'o_shape', shape: [3], data: [B, Nq, H * D], type: 'int64' },
      { name: 'scale', shape: [], data: [scale] },
    ];
    await compareWithOrt('attention', [q, k, v], ([q_, k_, v_]) => attention(q_!, k_!, v_!, { heads: H }), nodes, [B, Nq, H * D], { initializers });
  });

  it('erf GELU (Div, Erf, Add, Mul) vs gelu', async () => {
    const x = input('x', [4, 300], 23, -5, 5);
    await compareWithOrt(
      'gelu',
      [x],
      ([x_]) => gelu(x_!),
      [
        { op: 'Div', inputs: ['x', 'sqrt2'], outputs: ['xs'] },
        { op: 'Erf', inputs: ['xs'], outputs: ['e'] },
        { op: 'Add', inputs: ['e', 'one'], outputs: ['e1'] },
        { op: 'Mul', inputs: ['x', 'e1'], outputs: ['xe'] },
        { op: 'Mul', inputs: ['xe', 'half'], outputs: ['y'] },
      ],
      [4, 300],
      {
        initializers: [
          { name: 'sqrt2', shape: [], data: [Math.SQRT2] },
          { name: 'one', shape: [], data: [1] },
          { name: 'half', shape: [], data: [0.5] },
        ],
      },
    );
  });

  it('Resize nearest 2x (asymmetric, floor: PyTorch nearest) vs upsampleNearest2x', async () => {
    const x = input('x', [2, 3, 5, 7], 24);
    await compareWithOrt(
      'upsample nearest 2x',
      [x],
      ([x_]) => upsampleNearest2x(x_!),
      [
        {
          op: 'Resize',
          inputs: ['x', '', 'scales'],
          outputs: ['y'],
          attrs: { mode: { s: 'nearest' }, coordinate_transformation_mode: { s: 'asymmetric' }, nearest_mode: { s: 'floor' } },
        },
      ],
      [2, 3, 10, 14],
      { initializers: [{ name: 'scales', shape: [4], data: [1, 1, 2, 2] }] },
      // A copy: exact.
      { atol: 0, rtol: 0 },
    );
  });
});
