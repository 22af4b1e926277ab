// Optimizer kernels over flat parameter arenas: sum of squares (global gradient norm), fused AdamW, Lion and SGD, and Prodigy's three passes.
import { grid, memoSource, type Kernel } from '../kernel.js';
import { main1d, output } from './wgsl.js';

const WG = 256;
/** Workgroups of the first norm stage per arena: enough to fill a GPU, few enough for one finishing workgroup. */
export const NORM_PARTIALS = 256;

const treeReduce = `
  part[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }`;

export interface SumSquaresParams {
  /** vec4 words in the flat buffer (arenas pad to 64 elements). */
  n4: number;
  /** Workgroups, at most NORM_PARTIALS. */
  groups: number;
  /** Where this arena's partial sums start in the partials buffer. */
  slot: number;
}

/*
 * Stage 1 of the norm: `groups` workgroups of 256 threads stride over the buffer a vec4 at a time
 * (consecutive threads, consecutive 16-byte words), each thread summing squares in a register;
 * the workgroup folds its 256 sums in workgroup memory and writes one partial.
 */
const sumSquaresSource = memoSource('sum_squares', (p: SumSquaresParams) => `@group(0) @binding(0) var<storage, read> g: array<vec4<f32>>;
${output('partial', 1)}
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = wid.x * ${WG}u + lid; i < ${p.n4}u; i += ${p.groups * WG}u) {
    let v = g[i];
    acc += dot(v, v);
  }${treeReduce}
  if (lid == 0u) { partial[${p.slot}u + wid.x] = part[0]; }
}`);

export function sumSquaresKernel(p: SumSquaresParams): Kernel {
  return { name: 'grad_norm_partial', source: sumSquaresSource(p), workgroups: [p.groups, 1, 1], flops: 8 * p.n4, bytes: 16 * p.n4 + 4 * p.groups };
}

/** Groups for an arena of `n4` vec4 words: about 4 words per thread, at most NORM_PARTIALS. */
export function sumSquaresGroups(n4: number): number {
  return Math.max(1, Math.min(NORM_PARTIALS, Math.ceil(n4 / (4 * WG))));
}

/*
 * Stage 2: one workgroup sums the partials of every arena (constant [start, count) ranges of the
 * partials buffer), folds them in workgroup memory and writes the square root.
 */
const normFinishSource = memoSource('grad_norm_finish', (ranges: [number, number][]) => `@group(0) @binding(0) var<storage, read> partial: array<f32>;
${output('norm', 1)}
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
${ranges.map(([s, c]) => `  if (lid < ${c}u) { acc += partial[${s}u + lid]; }`).join('\n')}${treeReduce}
  if (lid == 0u) { norm[0] = sqrt(part[0]); }
}`);

export function normFinishKernel(ranges: [number, number][]): Kernel {
  const n = ranges.reduce((a, [, c]) => a + c, 0);
  return { name: 'grad_norm_finish', source: normFinishSource(ranges), workgroups: [1, 1, 1], flops: n + 1, bytes: 4 * n + 4 };
}

/*
 * The frame every fused elementwise optimizer shares: one thread per vec4 of the flat buffers, all
 * parameters of an arena in one dispatch. Bindings: grad, an 8-word hyperparameter buffer (so a
 * changing learning rate reuses the pipeline), the global norm, then param and the state buffers
 * read-write, then the flag. The clip factor min(1, maxNorm / (norm + 1e-6)) is computed on the GPU
 * from the norm (maxNorm <= 0: no clipping). A non-finite norm (exponent bits all ones: tested on the
 * bits, since shader compilers may fold float NaN tests) skips the whole update and raises the flag,
 * which is never cleared here so one flag can serve several arenas. The body sees `gr`, the clipped
 * gradient vec4, and `hp`.
 */
interface FusedSpec {
  n4: number;
  state: readonly string[];
  /** Which hp word holds maxNorm. */
  maxNormWord: number;
  body: string;
}

const finiteNorm = (v: string) => `((bitcast<u32>(${v}) & 0x7f800000u) != 0x7f800000u)`;
const clipFactor = (nrm: string, maxNorm: string) => `select(1.0, min(1.0, ${maxNorm} / (${nrm} + 1e-6)), ${maxNorm} > 0.0)`;

const fusedSource = memoSource('fused_optimizer', (p: FusedSpec) => `@group(0) @binding(0) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> hp: array<f32, 8>;
@group(0) @binding(2) var<storage, read> gnorm: array<f32>;
@group(0) @binding(3) var<storage, read_write> param: array<vec4<f32>>;
${p.state.map((name, i) => `@group(0) @binding(${4 + i}) var<storage, read_write> ${name}: array<vec4<f32>>;`).join('\n')}
${output('flag', 4 + p.state.length)}
${main1d(WG)}
  let nrm = gnorm[0];
  if (!${finiteNorm('nrm')}) {
    if (gi == 0u) { flag[0] = 1.0; }
    return;
  }
  if (gi >= ${p.n4}u) { return; }
  let gr = g[gi] * ${clipFactor('nrm', `hp[${p.maxNormWord}]`)};
${p.body}
}`);

function fusedKernel(name: string, spec: FusedSpec, flopsPerElem: number): Kernel {
  const words = 2 * (2 + spec.state.length); // grad read; param and state read and written
  return { name, source: fusedSource(spec), workgroups: grid(Math.ceil(spec.n4 / WG)), flops: 4 * flopsPerElem * spec.n4, bytes: 16 * words * spec.n4 + 4 * 10 };
}

/** Layout of the AdamW hyperparameter buffer (f32 words), written once per step. */
export const ADAMW_HP = ['decay', 'stepSize', 'beta1', 'beta2', 'eps', 'invBc2', 'maxNorm', 'unused'] as const;

/** Fused AdamW (bias-corrected moments, decoupled decay). Binds grad, hp, norm, then param, m, v, flag (read-write). */
export function adamwKernel(n4: number): Kernel {
  return fusedKernel(
    'adamw',
    {
      n4,
      state: ['m', 'v'],
      maxNormWord: 6,
      body: `  let decay = hp[0]; let stepSize = hp[1]; let b1 = hp[2]; let b2 = hp[3];
  let eps = hp[4]; let invBc2 = hp[5];
  let mi = b1 * m[gi] + (1.0 - b1) * gr;
  let vi = b2 * v[gi] + (1.0 - b2) * gr * gr;
  m[gi] = mi;
  v[gi] = vi;
  param[gi] = param[gi] * decay - stepSize * mi / (sqrt(vi * invBc2) + eps);`,
    },
    16,
  );
}

/** Layout of the Lion hyperparameter buffer (f32 words). */
export const LION_HP = ['decay', 'lr', 'beta1', 'beta2', 'unused', 'unused', 'unused', 'maxNorm'] as const;

/**
 * Fused Lion (Chen et al. 2023): the update is the sign of an interpolation of momentum and
 * gradient (beta1), the momentum then tracks the gradient with beta2. sign(0) is 0, as torch.sign.
 * Binds grad, hp, norm, then param, m, flag.
 */
export function lionKernel(n4: number): Kernel {
  return fusedKernel(
    'lion',
    {
      n4,
      state: ['m'],
      maxNormWord: 7,
      body: `  let decay = hp[0]; let lr = hp[1]; let b1 = hp[2]; let b2 = hp[3];
  let mi = m[gi];
  param[gi] = param[gi] * decay - lr * sign(b1 * mi + (1.0 - b1) * gr);
  m[gi] = b2 * mi + (1.0 - b2) * gr;`,
    },
    9,
  );
}

/** Layout of the SGD hyperparameter buffer (f32 words); nesterov is 1 or 0. */
export const SGD_HP = ['lr', 'weightDecay', 'momentum', 'nesterov', 'unused', 'unused', 'unused', 'maxNorm'] as const;

/**
 * Fused SGD with momentum as torch.optim.SGD (dampening 0): d = g + wd·p (coupled L2 decay),
 * buf = mu·buf + d (a zero buffer makes the first step buf = d, as torch's clone), then
 * p -= lr·buf, or lr·(d + mu·buf) with Nesterov. Binds grad, hp, norm, then param, buf, flag.
 */
export function sgdKernel(n4: number): Kernel {
  return fusedKernel(
    'sgd',
    {
      n4,
      state: ['buf'],
      maxNormWord: 7,
      body: `  let lr = hp[0]; let wd = hp[1]; let mu = hp[2];
  let p = param[gi];
  let d = gr + wd * p;
  let b = mu * buf[gi] + d;
  buf[gi] = b;
  param[gi] = p - lr * select(b, d + mu * b, hp[3] > 0.5);`,
    },
    8,
  );
}

/**
 * Word layout of Prodigy's control buffer (f32): the scalars the GPU keeps across steps (d, its
 * running max, the numerator's moving sum, the count k of updates taken), what the finishing
 * dispatch leaves for the update (d·bias-correction before this step's change of d, and whether to
 * skip), the global norm copied in, the hyperparameters written each step, and one LR per arena.
 */
export const PRODIGY_CTL = {
  d: 0,
  dMax: 1,
  numerator: 2,
  k: 3,
  dBase: 4,
  skip: 5,
  /** d before this step's change. */
  dOld: 6,
  norm: 8,
  beta1: 16,
  beta2: 17,
  beta3: 18,
  eps: 19,
  weightDecay: 20,
  d0: 21,
  dCoef: 22,
  /** <= 0 for unbounded growth. */
  growth: 23,
  maxNorm: 24,
  biasCorrection: 25,
  /** 1: s takes (d/d0)·d·g, without the LR (prodigyopt's safeguard_warmup). */
  safeguardWarmup: 26,
  lr: 32,
} as const;

const C = PRODIGY_CTL;

/** Adam's bias correction sqrt(1 - b2^(k+1)) / (1 - b1^(k+1)) when enabled, from the GPU's k (b^x as exp2, 0^x as 0). */
const prodigyBiasCorrection = `fn powk(b: f32, e: f32) -> f32 { return select(0.0, exp2(e * log2(b)), b > 0.0); }
fn biasCorrection() -> f32 {
  let e = ctl[${C.k}] + 1.0;
  return select(1.0, sqrt(1.0 - powk(ctl[${C.beta2}], e)) / (1.0 - powk(ctl[${C.beta1}], e)), ctl[${C.biasCorrection}] > 0.5);
}`;

export interface ProdigyStatsParams {
  n4: number;
  /** Workgroups, at most NORM_PARTIALS (sumSquaresGroups). */
  groups: number;
  /** The arena's index: its LR is ctl[lr + arena]. */
  arena: number;
  /** Where this arena's numerator partials start; its |s| partials start `denomBase` later. */
  slot: number;
  denomBase: number;
}

/*
 * Prodigy's first pass over one arena, fused: with dlr = d·lr·bc and r = (d/d0)·dlr, the Adam
 * moments take the gradient scaled by d (m = b1·m + d(1-b1)·g, v = b2·v + d²(1-b2)·g²), the
 * accumulator s = b3·s + r·g (r without lr·bc under safeguard warmup), and each workgroup writes two partial sums: r·<g, p0 - p> and |s|_1.
 * Strided like the norm's first stage (registers, then a tree in workgroup memory). An arena with
 * LR 0 or a non-finite norm changes nothing and contributes zeros.
 */
const prodigyStatsSource = memoSource('prodigy_stats', (p: ProdigyStatsParams) => `@group(0) @binding(0) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> ctl: array<f32>;
@group(0) @binding(2) var<storage, read> param: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> p0: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> acc_s: array<vec4<f32>>;
${output('partial', 7)}
var<workgroup> part: array<vec2<f32>, ${WG}>;
${prodigyBiasCorrection}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let nrm = ctl[${C.norm}];
  let lr = ctl[${C.lr + p.arena}];
  var acc = vec2<f32>(0.0, 0.0);
  if (${finiteNorm('nrm')} && lr > 0.0) {
    let d = ctl[${C.d}];
    let b1 = ctl[${C.beta1}]; let b2 = ctl[${C.beta2}]; let b3 = ctl[${C.beta3}];
    let r = d / ctl[${C.d0}] * d * lr * biasCorrection();
    let rs = select(r, d / ctl[${C.d0}] * d, ctl[${C.safeguardWarmup}] > 0.5);
    let cm = d * (1.0 - b1);
    let cv = d * d * (1.0 - b2);
    let clip = ${clipFactor('nrm', `ctl[${C.maxNorm}]`)};
    var num = 0.0;
    for (var i = wid.x * ${WG}u + lid; i < ${p.n4}u; i += ${p.groups * WG}u) {
      let gr = g[i] * clip;
      num += dot(gr, p0[i] - param[i]);
      m[i] = b1 * m[i] + cm * gr;
      v[i] = b2 * v[i] + cv * gr * gr;
      let si = b3 * acc_s[i] + rs * gr;
      acc_s[i] = si;
      acc.y += dot(abs(si), vec4<f32>(1.0));
    }
    acc.x = r * num;
  }${treeReduce}
  if (lid == 0u) {
    partial[${p.slot}u + wid.x] = part[0].x;
    partial[${p.denomBase + p.slot}u + wid.x] = part[0].y;
  }
}`);

/** Binds grad, ctl, param, p0 (read), then m, v, s, partials (read-write): eight storage buffers, WebGPU's guaranteed minimum. */
export function prodigyStatsKernel(p: ProdigyStatsParams): Kernel {
  return { name: 'prodigy_stats', source: prodigyStatsSource(p), workgroups: [p.groups, 1, 1], flops: 4 * 20 * p.n4, bytes: 16 * 10 * p.n4 + 8 * p.groups };
}

export interface ProdigyFinishParams {
  /** [start, count) of each arena's numerator partials; the |s| partials sit `denomBase` later. */
  ranges: [number, number][];
  denomBase: number;
}

/*
 * Prodigy's d, in one workgroup: sums the partials into this step's numerator increment and the
 * denominator |s|_1; numerator = b3·numerator + increment, d_hat = d_coef·numerator / denominator,
 * d_max = max(d_max, d_hat), d = min(d_max, d·growth) (d_max when unbounded; the first raise
 * from d0 is d_hat itself). A zero denominator (no gradient yet, or every LR 0) leaves d, the
 * numerator and k as they were and marks the step skipped, as prodigyopt returns early; a
 * non-finite norm does the same and raises the flag.
 */
const prodigyFinishSource = memoSource('prodigy_finish', (p: ProdigyFinishParams) => `@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> ctl: array<f32>;
${output('flag', 2)}
var<workgroup> part: array<vec2<f32>, ${WG}>;
${prodigyBiasCorrection}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var acc = vec2<f32>(0.0, 0.0);
${p.ranges.map(([s, c]) => `  if (lid < ${c}u) { acc += vec2<f32>(partial[${s}u + lid], partial[${p.denomBase + s}u + lid]); }`).join('\n')}${treeReduce}
  if (lid != 0u) { return; }
  if (!${finiteNorm(`ctl[${C.norm}]`)}) {
    flag[0] = 1.0;
    ctl[${C.skip}] = 1.0;
    return;
  }
  let d = ctl[${C.d}];
  ctl[${C.dBase}] = d * biasCorrection();
  ctl[${C.dOld}] = d;
  let denom = part[0].y;
  if (denom == 0.0) {
    ctl[${C.skip}] = 1.0;
    return;
  }
  let numerator = ctl[${C.beta3}] * ctl[${C.numerator}] + part[0].x;
  let dHat = ctl[${C.dCoef}] * numerator / denom;
  let dMax = max(ctl[${C.dMax}], dHat);
  let growth = ctl[${C.growth}];
  let dNew = select(dMax, min(dMax, select(d, max(d, dHat), d == ctl[${C.d0}]) * growth), growth > 0.0);
  ctl[${C.d}] = dNew;
  ctl[${C.dMax}] = dMax;
  ctl[${C.numerator}] = numerator;
  ctl[${C.k}] = ctl[${C.k}] + 1.0;
  ctl[${C.skip}] = 0.0;
}`);

/** Binds partials (read), then ctl and flag (read-write). */
export function prodigyFinishKernel(p: ProdigyFinishParams): Kernel {
  const n = p.ranges.reduce((a, [, c]) => a + c, 0);
  return { name: 'prodigy_finish', source: prodigyFinishSource(p), workgroups: [1, 1, 1], flops: 2 * n + 20, bytes: 8 * n + 4 * 16 };
}

/*
 * Prodigy's update of one arena, one thread per vec4: with dlr = dBase·lr (the d before this step's
 * change) and the new d in the denominator, p = p·(1 - wd·dlr) - dlr·m / (sqrt(v) + d·eps). With
 * beta1 = 0 prodigyopt keeps no m and steps along d·g with the new d; m then holds d_old·g, so it is
 * rescaled by d / d_old. Nothing moves when the finishing dispatch marked the step skipped.
 */
const prodigyUpdateSource = memoSource('prodigy_update', (p: { n4: number; arena: number }) => `@group(0) @binding(0) var<storage, read> ctl: array<f32>;
@group(0) @binding(1) var<storage, read> m: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> param: array<vec4<f32>>;
${main1d(WG)}
  if (ctl[${C.skip}] != 0.0 || gi >= ${p.n4}u) { return; }
  let dlr = ctl[${C.dBase}] * ctl[${C.lr + p.arena}];
  let d = ctl[${C.d}];
  let mScale = select(1.0, d / ctl[${C.dOld}], ctl[${C.beta1}] == 0.0);
  let p = param[gi];
  param[gi] = p * (1.0 - ctl[${C.weightDecay}] * dlr) - dlr * mScale * m[gi] / (sqrt(v[gi]) + d * ctl[${C.eps}]);
}`);

/** Binds ctl, m, v (read), then param (read-write). */
export function prodigyUpdateKernel(p: { n4: number; arena: number }): Kernel {
  return { name: 'prodigy_update', source: prodigyUpdateSource(p), workgroups: grid(Math.ceil(p.n4 / WG)), flops: 4 * 7 * p.n4, bytes: 16 * 4 * p.n4 + 4 * 8 };
}
