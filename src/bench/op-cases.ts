// The per-op benchmark's cases at SD 1.5 U-Net shapes: each op as our kernel and as a small ONNX graph for ORT.
import { attention } from '../engine/ops/attention.js';
import { conv2d } from '../engine/ops/conv.js';
import { linear } from '../engine/ops/matmul.js';
import { groupNorm } from '../engine/ops/norm.js';
import type { Tensor } from '../engine/tensor.js';
import type { OnnxGraph, OnnxNode } from '../engine/testing/onnx.js';

/** A graph input: its name, shape and value range (uniform noise). */
export interface CaseInput {
  name: string;
  shape: number[];
  lo: number;
  hi: number;
}

/** An ONNX form of the op; `graph` lists the inputs in the same order as the case's. */
export interface OrtForm {
  /** What the graph is made of, for the report ("Conv", "MatMul/Softmax/MatMul", ...). */
  name: string;
  graph: OnnxGraph;
  /** Ops of the graph that are com.microsoft contrib ops (ORT's own fused kernels). */
  contribOps?: string[];
}

/** One benchmark row. */
export interface OpCase {
  op: string;
  /** Human-readable shape, e.g. "1x320x64x64 k3 -> 320". */
  shape: string;
  inputs: CaseInput[];
  outShape: number[];
  ours: (xs: Tensor[]) => Tensor;
  /** ORT forms to try in order: the first whose session puts every node on the WebGPU EP is timed. */
  ort: OrtForm[];
}

const inp = (name: string, shape: number[], lo = -1, hi = 1): CaseInput => ({ name, shape, lo, hi });

function graph(nodes: OnnxNode[], inputs: CaseInput[], outShape: number[], extra: Partial<OnnxGraph> = {}): OnnxGraph {
  return { nodes, inputs: inputs.map((i) => ({ name: i.name, shape: i.shape })), outputs: [{ name: 'y', shape: outShape }], ...extra };
}

function conv(hw: number, c: number): OpCase {
  const inputs = [inp('x', [1, c, hw, hw]), inp('w', [c, c, 3, 3], -0.05, 0.05), inp('b', [c])];
  const out = [1, c, hw, hw];
  const node: OnnxNode = { op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['y'], attrs: { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] } } };
  return {
    op: 'conv3x3',
    shape: `1x${c}x${hw}x${hw} -> ${c}`,
    inputs,
    outShape: out,
    ours: ([x, w, b]) => conv2d(x!, w!, b!, { padding: 1 }),
    ort: [{ name: 'Conv', graph: graph([node], inputs, out) }],
  };
}

function lin(m: number, k: number, n: number): OpCase {
  const inputs = [inp('x', [m, k]), inp('w', [n, k], -0.05, 0.05), inp('b', [n])];
  const out = [m, n];
  return {
    op: 'linear',
    shape: `${m}x${k} -> ${n}`,
    inputs,
    outShape: out,
    ours: ([x, w, b]) => linear(x!, w!, b!),
    ort: [{ name: 'Gemm(transB)', graph: graph([{ op: 'Gemm', inputs: ['x', 'w', 'b'], outputs: ['y'], attrs: { transB: { i: 1 } } }], inputs, out) }],
  };
}

/** softmax(q kᵀ / √D) v per head as ONNX: reshape/transpose to heads, two MatMuls and a Softmax. */
function attentionNodes(s: number, l: number, heads: number, d: number): { nodes: OnnxNode[]; init: OnnxGraph['initializers'] } {
  const t = (x: string, perm: number[], y: string): OnnxNode => ({ op: 'Transpose', inputs: [x], outputs: [y], attrs: { perm: { ints: perm } } });
  const r = (x: string, shape: string, y: string): OnnxNode => ({ op: 'Reshape', inputs: [x, shape], outputs: [y] });
  const nodes: OnnxNode[] = [
    r('q', 'qs', 'q4'), t('q4', [0, 2, 1, 3], 'qh'),
    r('k', 'ks', 'k4'), t('k4', [0, 2, 3, 1], 'kt'),
    r('v', 'ks', 'v4'), t('v4', [0, 2, 1, 3], 'vh'),
    { op: 'MatMul', inputs: ['qh', 'kt'], outputs: ['s'] },
    { op: 'Mul', inputs: ['s', 'scale'], outputs: ['ss'] },
    { op: 'Softmax', inputs: ['ss'], outputs: ['p'], attrs: { axis: { i: -1 } } },
    { op: 'MatMul', inputs: ['p', 'vh'], outputs: ['oh'] },
    t('oh', [0, 2, 1, 3], 'o4'), r('o4', 'os', 'y'),
  ];
  const init = [
    { name: 'qs', shape: [4], data: [1, s, heads, d], type: 'int64' as const },
    { name: 'ks', shape: [4], data: [1, l, heads, d], type: 'int64' as const },
    { name: 'os', shape: [3], data: [1, s, heads * d], type: 'int64' as const },
    { name: 'scale', shape: [1], data: [1 / Math.sqrt(d)] },
  ];
  return { nodes, init };
}

function attn(kind: 'self' | 'cross', s: number, hd: number, heads = 8): OpCase {
  const l = kind === 'self' ? s : 77;
  const d = hd / heads;
  const inputs = [inp('q', [1, s, hd]), inp('k', [1, l, hd]), inp('v', [1, l, hd])];
  const out = [1, s, hd];
  const { nodes, init } = attentionNodes(s, l, heads, d);
  return {
    op: `attention-${kind}`,
    shape: `${heads}x${s}x${d} keys ${l}`,
    inputs,
    outShape: out,
    ours: ([q, k, v]) => attention(q!, k!, v!, { heads }),
    ort: [
      // The plain ONNX form (agrees with ours to ~1e-7). ORT's fused com.microsoft.MultiHeadAttention
      // (--ort-form MultiHead) runs on WebGPU but its output differs by ~0.25 from both at these
      // shapes here (maxAbsDiff in the row), so it is not timed by default.
      { name: 'MatMul/Softmax/MatMul', graph: graph(nodes, inputs, out, { initializers: init }) },
      { name: 'com.microsoft.MultiHeadAttention', graph: graph([{ op: 'MultiHeadAttention', inputs: ['q', 'k', 'v'], outputs: ['y'], attrs: { num_heads: { i: heads } } }], inputs, out), contribOps: ['MultiHeadAttention'] },
    ],
  };
}

function gnorm(hw: number, c: number, groups = 32): OpCase {
  const inputs = [inp('x', [1, c, hw, hw], -0.5, 2.5), inp('s', [c], 0.5, 1.5), inp('b', [c])];
  const out = [1, c, hw, hw];
  const silu: OnnxNode[] = [
    { op: 'Sigmoid', inputs: ['n'], outputs: ['sg'] },
    { op: 'Mul', inputs: ['n', 'sg'], outputs: ['y'] },
  ];
  const gn: OnnxNode = { op: 'GroupNormalization', inputs: ['x', 's', 'b'], outputs: ['n'], attrs: { num_groups: { i: groups }, epsilon: { f: 1e-5 } } };
  // ORT's WebGPU EP may lack the opset-21 op: InstanceNormalization over [1, groups, C/groups·H·W] is the same statistics.
  const inst: OnnxNode[] = [
    { op: 'Reshape', inputs: ['x', 'gs'], outputs: ['xg'] },
    { op: 'InstanceNormalization', inputs: ['xg', 'one', 'zero'], outputs: ['ng'], attrs: { epsilon: { f: 1e-5 } } },
    { op: 'Reshape', inputs: ['ng', 'xs'], outputs: ['n0'] },
    { op: 'Unsqueeze', inputs: ['s', 'ax'], outputs: ['s3'] },
    { op: 'Unsqueeze', inputs: ['b', 'ax'], outputs: ['b3'] },
    { op: 'Mul', inputs: ['n0', 's3'], outputs: ['n1'] },
    { op: 'Add', inputs: ['n1', 'b3'], outputs: ['n'] },
  ];
  const instInit = [
    { name: 'gs', shape: [3], data: [1, groups, (c / groups) * hw * hw], type: 'int64' as const },
    { name: 'xs', shape: [4], data: out, type: 'int64' as const },
    { name: 'ax', shape: [2], data: [1, 2], type: 'int64' as const },
    { name: 'one', shape: [groups], data: new Array<number>(groups).fill(1) },
    { name: 'zero', shape: [groups], data: new Array<number>(groups).fill(0) },
  ];
  return {
    op: 'groupnorm-silu',
    shape: `1x${c}x${hw}x${hw} g${groups}`,
    inputs,
    outShape: out,
    ours: ([x, s, b]) => groupNorm(x!, groups, s!, b!, 1e-5, { activation: 'silu' }),
    ort: [
      { name: 'GroupNormalization+Sigmoid+Mul', graph: graph([gn, ...silu], inputs, out, { opset: 21, irVersion: 10 }) },
      { name: 'Reshape+InstanceNormalization+Reshape+Mul+Add+Sigmoid+Mul', graph: graph([...inst, ...silu], inputs, out, { initializers: instInit }) },
    ],
  };
}

/**
* SD 1.5's U-Net ops at batch 1 and a 512² image (64² latent): convs and group norms at each level,
 * the big linears (attention projections, 77-token context), self- and cross-attention. `quick`
 * divides every spatial side by 4 (tokens by 16) for a software GPU; channels stay. Cheapest first,
 * so that a run cut short on a software GPU still has most rows.
 */
export function opCases(quick: boolean): OpCase[] {
  const f = quick ? 4 : 1;
  const levels: [number, number][] = [[64, 320], [32, 640], [16, 1280], [8, 1280]];
  return [
    lin(77, 768, 320),
    lin(256 / f ** 2, 1280, 1280),
    lin(1024 / f ** 2, 640, 640),
    lin(4096 / f ** 2, 320, 320),
    ...levels.map(([hw, c]) => gnorm(hw / f, c)),
    attn('cross', 1024 / f ** 2, 640),
    attn('cross', 4096 / f ** 2, 320),
    conv(8 / f, 1280),
    attn('self', 1024 / f ** 2, 640),
    conv(16 / f, 1280),
    conv(32 / f, 640),
    conv(64 / f, 320),
    attn('self', 4096 / f ** 2, 320),
  ];
}
