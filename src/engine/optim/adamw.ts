// Fused AdamW over a parameter arena, the global gradient norm, and the non-finite guard.
import { grid, memoSource } from '../kernel.js';
import { reduceKernel } from '../kernels/reduce.js';
import { input, main1d, output } from '../kernels/wgsl.js';
import { map } from '../ops/elementwise.js';
import { launch } from '../ops/util.js';
import { empty, tensor, type Tensor } from '../tensor.js';
import type { ParamArena } from './arena.js';

/**
 * L2 norm of every gradient of the arenas as a 1-element GPU tensor (nothing is read back).
 * Two-stage reduction: 64-element chunks, then the chunk sums.
 */
export function globalGradNorm(arenas: readonly ParamArena[]): Tensor {
  const parts = arenas.map((a) => {
    const rows = a.numel / 64;
    const chunk = empty(a.backend, [rows]);
    launch(reduceKernel({ inShape: [rows, 64], axes: [1], dtype: 'f32', scale: 1, square: true }), [a.flatGrads], [chunk]);
    const total = empty(a.backend, [1]);
    launch(reduceKernel({ inShape: [rows], axes: [0], dtype: 'f32', scale: 1 }), [chunk], [total]);
    chunk.dispose();
    return total;
  });
  const sq = parts.reduce((acc, p) => {
    const s = map('add', [acc, p], 'a + b');
    acc.dispose();
    p.dispose();
    return s;
  });
  const norm = map('sqrt', [sq], 'sqrt(a)');
  sq.dispose();
  return norm;
}

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count, for bias correction. */
  step: number;
  /** Clip gradients to this global norm (needs `gradNorm`). */
  maxGradNorm?: number;
  /** The global gradient norm (from `globalGradNorm`), read on the GPU. */
  gradNorm?: Tensor;
  /** A 1-element tensor set to 1 when the norm is not finite (the update is then skipped). */
  nanFlag?: Tensor;
}

const WG = 256;

/*
 * One thread per element of the flat buffers. Hyperparameters arrive in a small buffer written
 * each step, so the pipeline is compiled once. A non-finite gradient norm skips the whole update
 * (parameters and moments unchanged) and raises the flag instead.
 */
const adamwSource = memoSource('adamw', (p: { n: number }) => `${input('g', 0)}
${input('hp', 1)}
${input('norm', 2)}
@group(0) @binding(3) var<storage, read_write> param: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
${output('flag', 6)}
${main1d(WG)}
  if (gi >= ${p.n}u) { return; }
  let lr = hp[0]; let b1 = hp[1]; let b2 = hp[2]; let eps = hp[3]; let wd = hp[4];
  let bc1 = hp[5]; let bc2 = hp[6]; let maxNorm = hp[7];
  let nrm = ld_norm(0u);
  let bad = !(nrm == nrm) || abs(nrm) > 3.0e38;
  if (bad) { if (gi == 0u) { flag[0] = 1.0; } return; }
  var clip = 1.0;
  if (maxNorm > 0.0) { clip = min(1.0, maxNorm / (nrm + 1e-6)); }
  let gr = ld_g(gi) * clip;
  let mi = b1 * m[gi] + (1.0 - b1) * gr;
  let vi = b2 * v[gi] + (1.0 - b2) * gr * gr;
  m[gi] = mi;
  v[gi] = vi;
  let pi = param[gi] * (1.0 - lr * wd);
  param[gi] = pi - lr * (mi / bc1) / (sqrt(vi / bc2) + eps);
}`);

/** One AdamW step (decoupled weight decay, bias correction, optional clipping) for every parameter of the arena. */
export function adamwStep(arena: ParamArena, o: AdamWOptions): void {
  const b = arena.backend;
  const hp = tensor(b, [o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, 1 - o.beta1 ** o.step, 1 - o.beta2 ** o.step, o.maxGradNorm ?? 0], [8]);
  const norm = o.gradNorm ?? tensor(b, [0], [1]);
  const flag = o.nanFlag ?? empty(b, [1]);
  const m = arena.stateBuffer('adam_m');
  const v = arena.stateBuffer('adam_v');
  const n = arena.numel;
  launch({ name: 'adamw', source: adamwSource({ n }), workgroups: grid(Math.ceil(n / WG)), flops: 18 * n, bytes: 4 * 7 * n }, [arena.flatGrads, hp, norm], [arena.flatParams, m, v, flag]);
  hp.dispose();
  m.dispose();
  v.dispose();
  if (!o.gradNorm) norm.dispose();
  if (!o.nanFlag) flag.dispose();
}
