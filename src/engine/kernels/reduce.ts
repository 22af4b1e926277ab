// Sum reductions over any set of axes: one workgroup per output element, a tree in shared memory.
import type { DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import type { SubgroupSizes } from '../subgroups.js';
import { SUBGROUP_BUILTINS, SUBGROUP_ENABLE, subgroupSlots, subgroupTree } from './subgroup.js';
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

/** Invocations per workgroup, the lanes one output's reduction spans. */
export const REDUCE_WG = 64;
const WG = REDUCE_WG;

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

/**
 * What the source depends on: the kept/reduced pattern, dtype, squaring and the subgroup sizes the
 * sum starts with (absent: a workgroup-memory tree only); sizes, strides and scale are uniforms.
 */
interface ReduceSourceParams {
  pattern: boolean[];
  dtype: DType;
  square: boolean;
  sg?: SubgroupSizes;
}

/** Fold the lanes' `acc` into part[0]: subgroupAdd, then a tree over the subgroups' partials; or a tree over all lanes. */
function fold(sg: SubgroupSizes | undefined): string {
  if (!sg) return `part[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }`;
  return `let lane = lid;
  let head = 0u;
  let t = subgroupAdd(acc);
  if (sid == 0u) { part[lid / sg] = t; }
  ${subgroupTree(WG, sg, (a, b) => `part[${a}] += part[${b}];`)}`;
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
const reduceSource = memoSource('reduce', (p: ReduceSourceParams) => `${p.sg ? SUBGROUP_ENABLE : ''}
${input('x', 0, p.dtype)}
${output('out', 1)}
${uniformDecl(2, reduceFields(p.pattern))}
var<workgroup> part: array<f32, ${p.sg ? subgroupSlots(WG, p.sg) : WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32${p.sg ? `, ${SUBGROUP_BUILTINS}` : ''}) {
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
  ${fold(p.sg)}
  if (lid == 0u && o < u.nOut) { out[o] = part[0] * u.scale; }
}`);

/** Sum (times scale) over `p.axes`; sg: subgroup sizes to start the sum with (see `subgroupsFor`, REDUCE_WG lanes). */
export function reduceKernel(p: ReduceParams, sg: SubgroupSizes | null = null): Kernel {
  const n = p.inShape.reduce((a, b) => a * b, 1);
  const nOut = p.inShape.reduce((a, d, i) => (p.axes.includes(i) ? a : a * d), 1);
  const c = collapse(p);
  const nRed = n / nOut;
  const uniforms = packUniforms(reduceFields(c.dims.map((d) => d.reduced)), [nOut, nRed, p.scale, ...c.dims.flatMap((d) => [d.size, d.stride])]);
  return { name: 'reduce', source: reduceSource({ pattern: c.dims.map((d) => d.reduced), dtype: p.dtype, square: p.square ?? false, ...(sg ? { sg } : {}) }), workgroups: grid(nOut), flops: n, bytes: n * 4 + nOut * 4, uniforms };
}
