// Named layers over a weight store, with an optional adapter hook (LoRA) on linear and conv layers.
import type { Tensor } from '../engine/tensor.js';
import { add, conv2d, groupNorm, layerNorm, linear, lowRankLinear, lowRankLinearGroup, lowRankLinears, type Conv2dOptions, type GroupNormOptions, type LowRank, type RowLayout } from '../engine/index.js';

/** Frozen weights by diffusers name (f16 or f32 storage on the GPU, or shapes only on the meta device). */
export interface WeightStore {
  get(name: string): Tensor;
  has(name: string): boolean;
}

/**
 * A low-rank adapter hook: a linear layer's factors (run fused with the base layer), or a conv
 * layer's delta to add to its output, by layer name; null when the layer is not adapted. LoRA
 * implements it; the models know nothing of training.
 */
export interface Adapter {
  lowRank(name: string): LowRank | null;
  convDelta(name: string, x: Tensor, opts: Conv2dOptions): Tensor | null;
  /** A weight-space adapter (LoHa, LoKr, DoRA): the layer's weight merged from the base weight `w` (shaped as `w`); null when it does not adapt the layer. */
  weight?(name: string, w: Tensor): Tensor | null;
  /** True when the adapter certainly leaves the layer as it is (no factors, no delta, no merged weight); absent: unknown. */
  frozen?(name: string): boolean;
}

/** Layers named as in diffusers checkpoints (`<name>.weight`, `<name>.bias`). */
export class Layers {
  constructor(readonly weights: WeightStore, readonly adapter: Adapter | null = null) {}

  private bias(name: string): Tensor | undefined {
    return this.weights.has(`${name}.bias`) ? this.weights.get(`${name}.bias`) : undefined;
  }

  /** y = x W^T + b (+ residual), plus the adapter's low-rank term, in one op. x [..., in]. */
  linear(name: string, x: Tensor, residual?: Tensor): Tensor {
    const w = this.weights.get(`${name}.weight`);
    const merged = this.adapter?.weight?.(name, w);
    if (merged) return linear(x, merged, this.bias(name), 1, residual);
    return lowRankLinear(x, w, this.bias(name), this.adapter?.lowRank(name) ?? null, residual);
  }

  /**
   * Several linear layers on one input (attention's q, k, v): their adapters' down projections run
   * as one GEMM where they can, independent GEMMs two per dispatch. residuals[i] is added to layer i's output.
   */
  linears(names: readonly string[], x: Tensor, residuals?: readonly Tensor[]): Tensor[] {
    if (this.adapter?.weight) return names.map((name, i) => this.linear(name, x, residuals?.[i]));
    const layers = names.map((name) => ({ w: this.weights.get(`${name}.weight`), bias: this.bias(name), lowRank: this.adapter?.lowRank(name) ?? null }));
    return residuals ? lowRankLinears(x, layers, residuals) : lowRankLinearGroup(x, layers);
  }

  /**
   * A 1x1 convolution applied to tokens [..., in] as a linear layer (SD 1.x proj_in/proj_out):
   * the [out, in, 1, 1] weight is viewed as [out, in]. With `layout`, x is [in, pixels] and/or
   * the output [out, pixels] (one image's NCHW activation), read and written in place.
   */
  pointwise(name: string, x: Tensor, residual?: Tensor, layout?: RowLayout): Tensor {
    const w = this.weights.get(`${name}.weight`);
    const w2 = w.rank === 4 ? w.reshape([w.shape[0]!, w.shape[1]!]) : w;
    const merged = this.adapter?.weight?.(name, w2);
    const y = lowRankLinear(x, merged ?? w2, this.bias(name), merged ? null : (this.adapter?.lowRank(name) ?? null), residual, layout);
    if (w2 !== w) w2.dispose();
    return y;
  }

  /** A conv layer (bias from the weights unless given; `opts.residual` added in the base conv's epilogue), plus the adapter's delta. */
  conv(name: string, x: Tensor, opts: Conv2dOptions = {}, bias = this.bias(name)): Tensor {
    const w = this.weights.get(`${name}.weight`);
    const merged = this.adapter?.weight?.(name, w);
    if (merged) return conv2d(x, merged, bias, opts);
    const y = conv2d(x, w, bias, opts);
    const { residual: _, ...geometry } = opts;
    const d = this.adapter?.convDelta(name, x, geometry);
    return d ? add(y, d) : y;
  }

  /** Whether layer `name` is certainly unadapted: no adapter, or one that says so. */
  frozen(name: string): boolean {
    return !this.adapter || this.adapter.frozen?.(name) === true;
  }

  groupNorm(name: string, x: Tensor, groups: number, eps: number, opts: GroupNormOptions = {}): Tensor {
    return groupNorm(x, groups, this.weights.get(`${name}.weight`), this.bias(name), eps, opts);
  }

  /** silu(groupNorm(x)) in one fused op (SD's ResNet and output norms). */
  groupNormSilu(name: string, x: Tensor, groups: number, eps: number): Tensor {
    return this.groupNorm(name, x, groups, eps, { activation: 'silu' });
  }

  layerNorm(name: string, x: Tensor, eps = 1e-5): Tensor {
    return layerNorm(x, this.weights.get(`${name}.weight`), this.bias(name), eps);
  }
}

/** Weight names and shapes of a model, in load order. */
export type WeightShapes = Map<string, number[]>;

export function addLinear(m: WeightShapes, name: string, out: number, inp: number, bias = true): void {
  m.set(`${name}.weight`, [out, inp]);
  if (bias) m.set(`${name}.bias`, [out]);
}

export function addConv(m: WeightShapes, name: string, out: number, inp: number, k: number, bias = true): void {
  m.set(`${name}.weight`, [out, inp, k, k]);
  if (bias) m.set(`${name}.bias`, [out]);
}

export function addNorm(m: WeightShapes, name: string, c: number): void {
  m.set(`${name}.weight`, [c]);
  m.set(`${name}.bias`, [c]);
}

/** Total number of parameters of a shape map. */
export function paramCount(m: WeightShapes): number {
  let n = 0;
  for (const s of m.values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}
