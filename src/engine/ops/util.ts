// Helpers every op uses: dispatch a kernel over tensors, broadcasting rules, shape checks.
import type { Binding } from '../backend.js';
import type { Kernel } from '../kernel.js';
import { strides } from '../kernels/wgsl.js';
import { empty, type Tensor } from '../tensor.js';

/** Dispatch `k` binding `inputs` then `outputs` in order. */
export function launch(k: Kernel, inputs: readonly Tensor[], outputs: readonly Tensor[]): void {
  const backend = (inputs[0] ?? outputs[0])!.backend;
  // One array, filled in place: this runs once per dispatch.
  const bindings = new Array<Binding>(inputs.length + outputs.length);
  for (let i = 0; i < inputs.length; i++) bindings[i] = inputs[i]!.binding();
  for (let i = 0; i < outputs.length; i++) bindings[inputs.length + i] = outputs[i]!.binding();
  backend.run(k, bindings);
}

/** A new f32 tensor on the same backend as `like`. */
export function emptyLike(like: Tensor, shape: readonly number[] = like.shape): Tensor {
  return empty(like.backend, shape, 'f32');
}

/** NumPy broadcasting of two shapes. */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`shapes [${a.join(', ')}] and [${b.join(', ')}] do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Strides of `shape` seen from an output of `outShape` (0 on broadcast dims). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const st = strides(shape);
  const lead = outShape.length - shape.length;
  return outShape.map((d, i) => (i < lead || shape[i - lead] === 1 ? 0 : st[i - lead]!));
}

/** Throw a readable error unless `cond`. */
export function check(cond: boolean, msg: () => string): asserts cond {
  if (!cond) throw new Error(msg());
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
