// LyCORIS network types beside LoRA (LoHa, LoKr, DoRA): each module's tensors as A1111/Forge and ComfyUI read them, and its weight as engine ops.
//
// Facts from LyCORIS (lycoris/modules/loha.py, lokr.py, base.py, functional/general.py) and the
// loaders (ComfyUI comfy/weight_adapter, A1111 extensions-builtin/Lora/network_*.py):
//  - LoHa: dW = (w1_a w1_b) ⊙ (w2_a w2_b) · alpha/r; w*_a [out, r], w*_b [r, in·k·k] (2-D also for convs).
//  - LoKr: dW = kron(w1, w2) · scale, w1 [a, b] full, w2 [c, d(, k, k)] full or w2_a [c, r] · w2_b [r, d·k·k];
//    (a, c) and (b, d) factor out and in as LyCORIS' factorization(n, -1) does. scale = alpha/r with
//    w2 factored; with both full the loaders use 1 (LyCORIS writes alpha = r then).
//  - DoRA (weight decomposition, "dora_scale"): W' = W + dW; W_d = W' · m / (‖W'‖ + eps), the norm per
//    input channel (over output rows and kernel taps) and m = dora_scale [1, in(, 1, 1)]: the axis
//    A1111 supports and ComfyUI picks for that shape. m starts at ‖W‖, so the first forward is W.
import { add, matmul, mul, powScalar, reshape, scale, sum, type Tensor } from '../engine/index.js';
import type { Rng } from '../engine/rng.js';
import type { LoraModuleSpec } from './lora.js';

/** The network types a run can train: kohya's LoRA (LoCon with a conv dim) and three from LyCORIS. */
export const NETWORK_TYPES = ['lora', 'loha', 'lokr', 'dora'] as const;
export type NetworkType = (typeof NETWORK_TYPES)[number];

/** LyCORIS' name for each type in `ss_network_args.algo` (DoRA is LoRA with `dora_wd`). */
export const LYCORIS_ALGO: Record<NetworkType, string> = { lora: 'lora', loha: 'loha', lokr: 'lokr', dora: 'lora' };

/** float32's machine epsilon: LyCORIS adds it to the DoRA norm (the weight cast to f32 first). */
export const DORA_EPS = 1.1920928955078125e-7;

/** One trained tensor of a module: its key after the module name, its shape in the engine and in the file, its first values. */
export interface ParamLayout {
  key: string;
  shape: number[];
  fileShape: number[];
  /** Starting values; 'norm' (DoRA's magnitude) is filled from the base weight instead. */
  init: ((rng: Rng) => Float32Array) | 'norm';
}

/** A module's tensors (in arena order), the scale of its delta and the alpha its file holds. */
export interface ModuleLayout {
  params: ParamLayout[];
  scale: number;
  fileAlpha: number;
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const zeros = (shape: number[]) => () => new Float32Array(numel(shape));
const normal = (shape: number[], std: number) => (rng: Rng) => rng.normals(numel(shape)).map((v) => v * std);
/** kaiming_uniform_(a = sqrt(5)) as torch draws it: bound 1/sqrt(fan_in), fan_in = the tensor's size over dim 0. */
const kaiming = (shape: number[]) => (rng: Rng) => {
  const bound = 1 / Math.sqrt(numel(shape.slice(1)));
  return Float32Array.from({ length: numel(shape) }, () => rng.uniform(-bound, bound));
};

/** A module's input width times its kernel taps: the columns of its weight as a matrix. */
const cols = (s: LoraModuleSpec) => s.inFeatures * s.kernel * s.kernel;
/** The file writes convs (1x1 included) with 4-D shapes, linears with 2-D. */
const isConvInFile = (s: LoraModuleSpec) => s.kind === 'conv' || s.pointwise;

/**
 * LyCORIS' factorization(n, -1) as its code computes it: walk the divisor pairs (m, n/m) up from
 * (1, n) until m passes n/m, then order the pair: the divisor pair nearest sqrt(n).
 * 128 → (8, 16), 320 → (16, 20), 360 → (18, 20), 127 → (1, 127).
 */
export function factorization(n: number): [number, number] {
  let [m, k] = [1, n];
  while (m < k) {
    let next = m + 1;
    while (n % next !== 0) next++;
    [m, k] = [next, n / next];
  }
  return m > k ? [k, m] : [m, k];
}

/** LoKr's factors of a module: w1 [a, b], w2 [c, d(, k, k)], and whether w2 is factored at the rank. */
export function lokrShape(s: LoraModuleSpec): { a: number; b: number; c: number; d: number; factored: boolean } {
  const [a, c] = factorization(s.outFeatures);
  const [b, d] = factorization(s.inFeatures);
  return { a, b, c, d, factored: s.rank < Math.max(c, d) / 2 };
}

/** The tensors of one module of a network type (not plain LoRA, which `lora.ts` lays out itself) and its scale. */
export function moduleLayout(type: Exclude<NetworkType, 'lora'>, s: LoraModuleSpec): ModuleLayout {
  const r = s.rank;
  const p = (key: string, shape: number[], init: ParamLayout['init'], fileShape = shape): ParamLayout => ({ key, shape, fileShape, init });
  if (type === 'loha') {
    const [a, b] = [[s.outFeatures, r], [r, cols(s)]];
    // LyCORIS' init: w1_a N(0, 0.1), w1_b and w2_b N(0, 1), w2_a zero (the first delta is zero).
    return { params: [p('hada_w1_a', a, normal(a, 0.1)), p('hada_w1_b', b, normal(b, 1)), p('hada_w2_a', a, zeros(a)), p('hada_w2_b', b, normal(b, 1))], scale: s.alpha / r, fileAlpha: s.alpha };
  }
  if (type === 'lokr') {
    const f = lokrShape(s);
    const w1 = p('lokr_w1', [f.a, f.b], kaiming([f.a, f.b]));
    if (f.factored) {
      const [wa, wb] = [[f.c, r], [r, f.d * s.kernel * s.kernel]];
      return { params: [w1, p('lokr_w2_a', wa, kaiming(wa)), p('lokr_w2_b', wb, zeros(wb))], scale: s.alpha / r, fileAlpha: s.alpha };
    }
    const w2 = s.kind === 'conv' ? [f.c, f.d, s.kernel, s.kernel] : [f.c, f.d];
    return { params: [w1, p('lokr_w2', w2, zeros(w2), isConvInFile(s) ? [f.c, f.d, s.kernel, s.kernel] : w2)], scale: 1, fileAlpha: r };
  }
  // DoRA: kohya's LoRA tensors (down kaiming, up zero) and the magnitude.
  const conv = s.kind === 'conv';
  const down = conv ? [r, s.inFeatures, s.kernel, s.kernel] : [r, s.inFeatures];
  const up = conv ? [s.outFeatures, r, 1, 1] : [s.outFeatures, r];
  const m = conv ? [1, s.inFeatures, 1, 1] : [1, s.inFeatures];
  return {
    params: [
      p('lora_down.weight', down, kaiming(down), s.pointwise ? [r, s.inFeatures, 1, 1] : down),
      p('lora_up.weight', up, zeros(up), s.pointwise ? [s.outFeatures, r, 1, 1] : up),
      p('dora_scale', m, 'norm', s.pointwise ? [1, s.inFeatures, 1, 1] : m),
    ],
    scale: s.alpha / r,
    fileAlpha: s.alpha,
  };
}

/**
 * The module's delta before the base weight's shape, [out, in·k·k], from its tensors by key:
 *   LoHa  s · (w1a w1b) ⊙ (w2a w2b)
 *   LoKr  s · kron(w1, w2): w1 [a, 1, b, 1] ⊙ w2 [1, c, 1, d·k·k] → [a·c, b·d·k·k] (row i·c+p, column j·d·kk+q·kk+t, as torch.kron)
 *   DoRA  s · up down
 * All recorded ops, so backward reaches every tensor.
 */
export function moduleDelta(type: Exclude<NetworkType, 'lora'>, s: LoraModuleSpec, t: (key: string) => Tensor, sc: number): Tensor {
  const out = s.outFeatures;
  const kcols = cols(s);
  let d: Tensor;
  if (type === 'loha') d = mul(matmul(t('hada_w1_a'), t('hada_w1_b')), matmul(t('hada_w2_a'), t('hada_w2_b')));
  else if (type === 'lokr') {
    const f = lokrShape(s);
    const tail = kcols / f.b;
    const w2 = f.factored ? matmul(t('lokr_w2_a'), t('lokr_w2_b')) : reshape(t('lokr_w2'), [f.c, tail]);
    d = reshape(mul(reshape(t('lokr_w1'), [f.a, 1, f.b, 1]), reshape(w2, [1, f.c, 1, tail])), [out, kcols]);
  } else d = matmul(reshape(t('lora_up.weight'), [out, s.rank]), reshape(t('lora_down.weight'), [s.rank, kcols]));
  return sc === 1 ? d : scale(d, sc);
}

/** ‖w‖ per input channel (dim 1), over every other dim, kept as size 1: [1, in(, 1, 1)]. */
export function columnNorm(w: Tensor): Tensor {
  const axes = w.shape.map((_, i) => i).filter((i) => i !== 1);
  return powScalar(sum(mul(w, w), axes, true), 0.5);
}

/**
 * The layer's weight under the module (shaped as the base weight `w`, f32), at strength `multiplier`:
 * W + m·dW for LoHa and LoKr; for DoRA W + m·(W_d − W) with W_d = W'·dora_scale/(‖W'‖ + eps),
 * W' = W + dW (ComfyUI's and A1111's reading of a strength other than 1).
 */
export function mergedWeight(type: Exclude<NetworkType, 'lora'>, s: LoraModuleSpec, t: (key: string) => Tensor, sc: number, w: Tensor, multiplier = 1): Tensor {
  if (type !== 'dora') return add(reshape(moduleDelta(type, s, t, sc * multiplier), w.shape), w);
  const merged = add(reshape(moduleDelta(type, s, t, sc), w.shape), w);
  const norm = columnNorm(merged);
  const wd = mul(merged, mul(reshape(t('dora_scale'), norm.shape), powScalar(norm, -1, DORA_EPS)));
  return multiplier === 1 ? wd : add(scale(wd, multiplier), w, 1 - multiplier);
}
