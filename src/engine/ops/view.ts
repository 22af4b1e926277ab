// Reshape as a differentiable view: same storage, new shape; its gradient is the reshaped gradient.
import { record, type BackwardRule } from '../autograd.js';
import type { Tensor } from '../tensor.js';

declare module '../autograd.js' {
  interface OpSaved {
    reshape: { inShape: readonly number[] };
  }
}

/** A view of `x` with another shape (no copy); -1 infers one dimension. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const out = x.reshape(shape);
  record('reshape', [x], [out], { inShape: x.shape });
  return out;
}

const reshapeBackward: BackwardRule<'reshape'> = ({ inShape }, [g]) => [g!.reshape(inShape)];

export const viewRules = { reshape: reshapeBackward };
