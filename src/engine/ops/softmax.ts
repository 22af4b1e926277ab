// Softmax along one axis, forward and backward side by side.
import { noGrad, record, type BackwardRule } from '../autograd.js';
import { softmaxBackwardKernel, softmaxKernel, softmaxLanes, type SoftmaxParams } from '../kernels/softmax.js';
import { subgroupsFor } from '../subgroups.js';
import type { Tensor } from '../tensor.js';
import { check, emptyLike, launch } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    softmax: { y: Tensor; p: SoftmaxParams };
  }
}

function params(x: Tensor, axis: number): SoftmaxParams {
  const ax = axis < 0 ? axis + x.rank : axis;
  check(Number.isInteger(ax) && ax >= 0 && ax < x.rank, () => `softmax: axis ${axis} out of range for [${x.shape}]`);
  const outer = x.shape.slice(0, ax).reduce((a, b) => a * b, 1);
  const inner = x.shape.slice(ax + 1).reduce((a, b) => a * b, 1);
  const n = x.shape[ax]!;
  const sg = subgroupsFor(x.backend, softmaxLanes(n));
  return { outer, n, inner, dtype: x.dtype, ...(sg ? { sg } : {}) };
}

/** exp(x - max) / Σ exp(x - max) along `axis` (the last by default); same shape as x, f32. */
export function softmax(x: Tensor, axis = -1): Tensor {
  const p = params(x, axis);
  const y = emptyLike(x);
  if (x.size > 0) launch(softmaxKernel(p), [x], [y]);
  record('softmax', [x], [y], { y, p }, [y]);
  return y;
}

// Saved: the output y only. With s = Σ_axis g·y:  dx = y (g - s)   (y, g, dx all shaped like x).
const softmaxBackward: BackwardRule<'softmax'> = ({ y, p }, [g]) =>
  noGrad(() => {
    const dx = emptyLike(y);
    if (y.size > 0) launch(softmaxBackwardKernel(p), [y, g!], [dx]);
    return [dx];
  });

export const softmaxRules = { softmax: softmaxBackward };
