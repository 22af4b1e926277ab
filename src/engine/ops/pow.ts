// Elementwise power by a constant exponent (sqrt, reciprocal, ...), with its backward beside it.
import { record, type BackwardRule } from '../autograd.js';
import type { Tensor } from '../tensor.js';
import { map } from './elementwise.js';
import { check } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    pow: { x: Tensor; p: number; offset: number };
  }
}

/**
 * y = (x + offset)^p elementwise for constants p and offset (p 0.5: square root; p -1 with a small
 * offset: a guarded reciprocal), f32 out. Defined where x + offset > 0 (WGSL's pow is undefined for
 * negative bases): norms and sums of squares, not signed data.
 */
export function powScalar(x: Tensor, p: number, offset = 0): Tensor {
  check(Number.isFinite(p) && Number.isFinite(offset), () => `powScalar: exponent and offset must be finite, got ${p} and ${offset}`);
  const out = map('pow', [x], 'pow(a + k1, k0)', 4, undefined, [p, offset]);
  record('pow', [x], [out], { x, p, offset }, [x]);
  return out;
}

// y = (x + c)^p, gY:  dX = gY · p · (x + c)^(p-1)
const powBackward: BackwardRule<'pow'> = ({ x, p, offset }, [g]) => [map('pow_grad', [g!, x], 'a * k0 * pow(b + k2, k1)', 6, undefined, [p, p - 1, offset])];

export const powRules = { pow: powBackward };
