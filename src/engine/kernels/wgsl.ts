// WGSL snippets every kernel generator shares: typed bindings with f16 unpacking, and grid indexing.
import type { DType } from '../dtype.js';

/** A read-only input binding with an `ld_<name>(i)` loader that returns f32 whatever the storage. */
export function input(name: string, binding: number, dtype: DType = 'f32'): string {
  if (dtype === 'f32') {
    return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<f32>;
fn ld_${name}(i: u32) -> f32 { return ${name}[i]; }`;
  }
  return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<u32>;
fn ld_${name}(i: u32) -> f32 { return unpack2x16float(${name}[i >> 1u])[i & 1u]; }`;
}

/** A writable f32 output binding. */
export function output(name: string, binding: number): string {
  return `@group(0) @binding(${binding}) var<storage, read_write> ${name}: array<f32>;`;
}

/** Entry point header for a 1-D kernel over a 2-D grid of workgroups; defines `gi`, the global linear index. */
export function main1d(wg: number): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let gi = (wid.x + wid.y * nwg.x) * ${wg}u + lid;`;
}

/** A float literal WGSL accepts (never `1e-5` without a dot issue, never `NaN`). */
export function f(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`non-finite constant ${v} in a kernel`);
  const s = String(v);
  return /[.eE]/.test(s) ? s : s + '.0';
}

/** Row-major strides of a shape. */
export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/**
 * WGSL expression for the element offset into a tensor of `inStrides` (0 where broadcast) given
 * the linear index `idx` into an output of `outShape`. Dimensions are unrolled as constants.
 */
export function broadcastIndex(idx: string, outShape: readonly number[], inStrides: readonly number[]): string {
  const os = strides(outShape);
  const terms: string[] = [];
  for (let d = 0; d < outShape.length; d++) {
    const st = inStrides[d]!;
    if (st === 0 || outShape[d] === 1) continue;
    const coord = d === 0 ? `(${idx} / ${os[d]}u)` : `((${idx} / ${os[d]}u) % ${outShape[d]}u)`;
    terms.push(st === 1 ? coord : `${coord} * ${st}u`);
  }
  return terms.length ? terms.join(' + ') : '0u';
}

/** One kernel-uniform field: its WGSL name and scalar type. */
export type UniformField = readonly [name: string, type: 'u32' | 'i32' | 'f32'];

/**
 * The WGSL struct `U` of `fields` bound as `u` at `binding` (the number of storage bindings):
 * sizes read from it at run time keep shapes out of the source, so one pipeline serves them all.
 */
export function uniformDecl(binding: number, fields: readonly UniformField[]): string {
  if (!fields.length) return '';
  return `struct U { ${fields.map(([n, t]) => `${n}: ${t}`).join(', ')} }
@group(0) @binding(${binding}) var<uniform> u: U;`;
}

/** The words of `values` laid out as `uniformDecl(fields)` declares them. */
export function packUniforms(fields: readonly UniformField[], values: readonly number[]): Uint32Array {
  if (values.length !== fields.length) throw new Error(`uniforms: ${values.length} values for ${fields.length} fields`);
  const words = new Uint32Array(fields.length);
  const fv = new Float32Array(words.buffer);
  const iv = new Int32Array(words.buffer);
  fields.forEach(([, t], i) => {
    if (t === 'f32') fv[i] = values[i]!;
    else if (t === 'i32') iv[i] = values[i]!;
    else words[i] = values[i]!;
  });
  return words;
}

/**
 * Drop size-1 dims and merge neighbours that every stride set walks contiguously, so shapes that
 * index alike (any same-shape elementwise op is 1-D) generate the same source. `strideSets[j][d]`
 * are element strides in `shape`'s coordinates (0 where broadcast).
 */
export function collapseDims(shape: readonly number[], strideSets: readonly (readonly number[])[]): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = strideSets.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = outShape.length - 1;
    const mergeable = last >= 0 && strideSets.every((s, j) => outStrides[j]![last] === s[d]! * shape[d]!);
    if (mergeable) {
      outShape[last]! *= shape[d]!;
      strideSets.forEach((s, j) => (outStrides[j]![last] = s[d]!));
    } else {
      outShape.push(shape[d]!);
      strideSets.forEach((s, j) => outStrides[j]!.push(s[d]!));
    }
  }
  if (!outShape.length) return { shape: [1], strides: strideSets.map(() => [0]) };
  return { shape: outShape, strides: outStrides };
}
