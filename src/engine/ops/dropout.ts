// Dropout with a counter-based hash mask: the same seed gives the same mask, so recomputation replays it.
import { record, type BackwardRule } from '../autograd.js';
import { grid, memoSource } from '../kernel.js';
import { f, input, main1d, output } from '../kernels/wgsl.js';
import type { Tensor } from '../tensor.js';
import { reshape } from './view.js';
import { check, emptyLike, launch } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    dropout: { p: number; seed: number };
  }
}

const WG = 256;

/* One thread per element: keep when hash(seed, index) / 2^32 >= p; kept values scaled by 1/(1-p). */
const dropoutSource = memoSource('dropout', (q: { n: number; p: number; seed: number }) => `${input('x', 0)}\n${output('out', 1)}
fn hash(a: u32) -> u32 {
  var x = a;
  x ^= x >> 16u; x *= 0x7feb352du;
  x ^= x >> 15u; x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}
${main1d(WG)}
  if (gi >= ${q.n}u) { return; }
  let u = f32(hash(gi ^ hash(${q.seed >>> 0}u)) >> 8u) * ${f(1 / 16777216)};
  out[gi] = select(0.0, ld_x(gi) * ${f(1 / (1 - q.p))}, u >= ${f(q.p)});
}`);

function applyMask(x: Tensor, p: number, seed: number): Tensor {
  const out = emptyLike(x);
  launch({ name: 'dropout', source: dropoutSource({ n: x.size, p, seed }), workgroups: grid(Math.ceil(x.size / WG)), flops: 12 * x.size, bytes: 8 * x.size }, [x], [out]);
  return out;
}

/**
 * Zero each element with probability p (training only) and scale the rest by 1/(1−p). The mask is a
 * pure function of (seed, element index): callers vary the seed per step and per layer.
 */
export function dropout(x: Tensor, p: number, seed: number, training = true): Tensor {
  check(p >= 0 && p < 1, () => `dropout probability must be in [0, 1), got ${p}`);
  if (!training || p === 0) return reshape(x, x.shape);
  const out = applyMask(x, p, seed);
  record('dropout', [x], [out], { p, seed });
  return out;
}

// The mask is re-derived from the seed: nothing else is saved.
const dropoutBackward: BackwardRule<'dropout'> = ({ p, seed }, [g]) => [applyMask(g!, p, seed)];

export const dropoutRules = { dropout: dropoutBackward };
