// GEGLU (diffusers' feed-forward activation), forward and backward side by side.
import { noGrad, record, type BackwardRule } from '../autograd.js';
import { gegluBackwardKernel, gegluKernel, type GegluParams } from '../kernels/geglu.js';
import type { Tensor } from '../tensor.js';
import { check, emptyLike, launch } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    geglu: { x: Tensor; p: GegluParams };
  }
}

/**
 * diffusers' GEGLU activation: x [..., 2F] → value · gelu(gate) [..., F], where value is the first
 * half of the last dimension and gate the second, with the exact erf GELU.
 */
export function geglu(x: Tensor): Tensor {
  check(x.rank >= 1 && x.shape[x.rank - 1]! % 2 === 0, () => `geglu: last dimension of [${x.shape}] must be even`);
  const F = x.shape[x.rank - 1]! / 2;
  const p: GegluParams = { rows: F === 0 ? 0 : x.size / (2 * F), F };
  const y = emptyLike(x, [...x.shape.slice(0, -1), F]);
  if (y.size > 0) launch(gegluKernel(p), [x], [y]);
  record('geglu', [x], [y], { x, p }, [x]);
  return y;
}

// Saved: x [..., 2F].  dvalue = dy·gelu(gate),  dgate = dy·value·gelu'(gate)   → dx [..., 2F]
const gegluBackward: BackwardRule<'geglu'> = ({ x, p }, [g]) =>
  noGrad(() => {
    const dx = emptyLike(x);
    if (x.size > 0) launch(gegluBackwardKernel(p), [x, g!], [dx]);
    return [dx];
  });

export const gegluRules = { geglu: gegluBackward };
