// Sum reductions over any set of axes: one workgroup per output element, a tree in shared memory.
import type { DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import { input, output, packUniforms, strides, uniformDecl, type UniformField } from './wgsl.js';

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

/** A reduction collapsed to alternating runs of kept and reduced dims (adjacent same-kind dims merged, size 1 dropped). */
interface Collapsed {
  dims: { size: number; stride: number; reduced: boolean }[];
}

function collapse(p: ReduceParams): Collapsed {
  const st = strides(p.inShape);
  const dims: Collapsed['dims'] = [];
  p.inShape.forEach((size, i) => {
    if (size === 1) return;
    const reduced = p.axes.includes(i);
    const last = dims[dims.length - 1];
    if (last && last.reduced === reduced) {
      last.size *= size;
      last.stride = st[i]!;
    } else dims.push({ size, stride: st[i]!, reduced });
  });
  return { dims };
}

/** What the source depends on: the kept/reduced pattern, dtype and squaring; sizes, strides and scale are uniforms. */
interface ReduceSourceParams {
  pattern: boolean[];
  dtype: DType;
  square: boolean;
}

function reduceFields(pattern: readonly boolean[]): UniformField[] {
  const f: UniformField[] = [['nOut', 'u32'], ['nRed', 'u32'], ['scale', 'f32']];
  pattern.forEach((_, i) => f.push([`d${i}`, 'u32'], [`s${i}`, 'u32']));
  return f;
}

/** WGSL statements adding to `acc` the offset of linear index `idx` over the dims of one kind, innermost first. */
function peel(pattern: readonly boolean[], reduced: boolean, idx: string, acc: string): string {
  const ds = pattern.map((r, i) => (r === reduced ? i : -1)).filter((i) => i >= 0);
  if (!ds.length) return '';
  const out = [`var rem_${acc} = ${idx};`];
  for (let k = ds.length - 1; k > 0; k--) out.push(`${acc} += (rem_${acc} % u.d${ds[k]}) * u.s${ds[k]}; rem_${acc} = rem_${acc} / u.d${ds[k]};`);
  out.push(`${acc} += rem_${acc} * u.s${ds[0]};`);
  return out.join(' ');
}

/*
 * Tiling: workgroup g computes output g. Its 64 threads stride over the reduced elements (the
 * reduced index is split into the kept base offset plus a reduced offset, sizes and strides from
 * uniforms after collapsing adjacent dims of one kind, so one pipeline serves a pattern such as
 * "reduce, keep, reduce" at every size), then fold their partial sums in workgroup memory.
 * Reduced extents of any size work; the number of outputs is bounded only by the 2-D grid.
 */
const reduceSource = memoSource('reduce', (p: ReduceSourceParams) => `${input('x', 0, p.dtype)}
${output('out', 1)}
${uniformDecl(2, reduceFields(p.pattern))}
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let o = wid.x + wid.y * nwg.x;
  var base = 0u;
  ${peel(p.pattern, false, 'o', 'base')}
  var acc = 0.0;
  for (var r = lid; r < u.nRed; r += ${WG}u) {
    var off = base;
    ${peel(p.pattern, true, 'r', 'off')}
    let v = ld_x(off);
    acc += ${p.square ? 'v * v' : 'v'};
  }
  part[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u && o < u.nOut) { out[o] = part[0] * u.scale; }
}`);

export function reduceKernel(p: ReduceParams): Kernel {
  const n = p.inShape.reduce((a, b) => a * b, 1);
  const nOut = p.inShape.reduce((a, d, i) => (p.axes.includes(i) ? a : a * d), 1);
  const c = collapse(p);
  const nRed = n / nOut;
  const uniforms = packUniforms(reduceFields(c.dims.map((d) => d.reduced)), [nOut, nRed, p.scale, ...c.dims.flatMap((d) => [d.size, d.stride])]);
  return { name: 'reduce', source: reduceSource({ pattern: c.dims.map((d) => d.reduced), dtype: p.dtype, square: p.square ?? false }), workgroups: grid(nOut), flops: n, bytes: n * 4 + nOut * 4, uniforms };
}
