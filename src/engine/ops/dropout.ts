// Dropout with a counter-based hash mask: the same seed gives the same mask, so recomputation replays it.
import { record, type BackwardRule } from '../autograd.js';
import { dropoutKernel } from '../kernels/dropout.js';
import { empty, type Tensor } from '../tensor.js';
import { reshape } from './view.js';
import { check, emptyLike, launch } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    dropout: { p: number; seed: number };
  }
}

/** mask(seed) * x / (1 - p), the seed uploaded as one u32 word. */
function applyMask(x: Tensor, p: number, seed: number): Tensor {
  const s = empty(x.backend, [1]);
  if (x.backend.kind === 'gpu') x.backend.write(s.storage, s.offset, Uint32Array.of(seed));
  const out = emptyLike(x);
  launch(dropoutKernel({ n: x.size, p, dtype: x.dtype }), [x, s], [out]);
  s.dispose();
  return out;
}

/**
 * Zero each element with probability p (training only) and scale the rest by 1/(1−p). The mask is a
 * pure function of (seed, element index), so a recomputed forward (checkpointing) and the backward
 * replay it exactly; callers vary the seed per step and per layer. p = 0 or `training` false
 * return `x` as a view.
 */
export function dropout(x: Tensor, p: number, seed: number, training = true): Tensor {
  check(p >= 0 && p < 1, () => `dropout probability must be in [0, 1), got ${p}`);
  if (!training || p === 0) return reshape(x, x.shape);
  const s = seed >>> 0;
  const out = applyMask(x, p, s);
  record('dropout', [x], [out], { p, seed: s });
  return out;
}

// x, g: [...] -> dx = mask(seed) * g / (1 - p); the mask is re-derived, nothing but the seed is saved
const dropoutBackward: BackwardRule<'dropout'> = ({ p, seed }, [g]) => [applyMask(g!, p, seed)];

export const dropoutRules = { dropout: dropoutBackward };
