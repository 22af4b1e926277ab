// Sum reductions over any set of axes: one workgroup per output element, a tree in shared memory.
import type { DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import { broadcastIndex, f, input, output, strides } from './wgsl.js';

export interface ReduceParams {
  inShape: number[];
  /** Axes summed away. */
  axes: number[];
  dtype: DType;
  /** Multiply the sum (1/n gives the mean). */
  scale: number;
  /** Square each element before summing (for norms). */
  square?: boolean;
}

const WG = 64;

/*
 * Tiling: workgroup g computes output g. Its 64 threads stride over the reduced elements (the
 * reduced index is split into the kept base offset plus a reduced offset, both with constant
 * strides), then fold their partial sums in workgroup memory. Reduced extents of any size work;
 * the number of outputs is bounded only by the 2-D grid.
 */
const reduceSource = memoSource('reduce', (p: ReduceParams) => {
  const st = strides(p.inShape);
  const keptShape = p.inShape.map((d, i) => (p.axes.includes(i) ? 1 : d));
  const redShape = p.inShape.map((d, i) => (p.axes.includes(i) ? d : 1));
  const keptStrides = st.map((s, i) => (p.axes.includes(i) ? 0 : s));
  const redStrides = st.map((s, i) => (p.axes.includes(i) ? s : 0));
  const nOut = keptShape.reduce((a, b) => a * b, 1);
  const nRed = redShape.reduce((a, b) => a * b, 1);
  return `${input('x', 0, p.dtype)}
${output('out', 1)}
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let o = wid.x + wid.y * nwg.x;
  let base = ${broadcastIndex('o', keptShape, keptStrides)};
  var acc = 0.0;
  for (var r = lid; r < ${nRed}u; r += ${WG}u) {
    let v = ld_x(base + ${broadcastIndex('r', redShape, redStrides)});
    acc += ${p.square ? 'v * v' : 'v'};
  }
  part[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u && o < ${nOut}u) { out[o] = part[0] * ${f(p.scale)}; }
}`;
});

export function reduceKernel(p: ReduceParams): Kernel {
  const n = p.inShape.reduce((a, b) => a * b, 1);
  const nOut = p.inShape.reduce((a, d, i) => (p.axes.includes(i) ? a : a * d), 1);
  return { name: 'reduce', source: reduceSource(p), workgroups: grid(nOut), flops: n, bytes: n * 4 + nOut * 4 };
}
