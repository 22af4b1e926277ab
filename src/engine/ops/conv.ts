// 2-D convolution as implicit GEMM (no im2col buffer), forward and both backward passes; nearest 2x upsampling.
import { noGrad, record, type BackwardRule } from '../autograd.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import { gemmKernel, gemmNaiveKernel, type GemmSpec } from '../kernels/gemm.js';
import { input, main1d, output } from '../kernels/wgsl.js';
import type { Tensor } from '../tensor.js';
import { reduceTo } from './elementwise.js';
import { check, emptyLike, launch } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    conv2d: { x: Tensor; w: Tensor; geo: ConvGeometry };
    upsample2x: { shape: readonly number[] };
  }
}

export interface Conv2dOptions {
  stride?: number;
  /** Same on every side, or [top, bottom, left, right] (SD's VAE encoder pads only right and bottom). */
  padding?: number | readonly [number, number, number, number];
}

/** Every size a conv kernel bakes in. */
export interface ConvGeometry {
  N: number;
  C: number;
  H: number;
  W: number;
  O: number;
  kh: number;
  kw: number;
  stride: number;
  pt: number;
  pl: number;
  OH: number;
  OW: number;
}

function geometry(x: Tensor, w: Tensor, o: Conv2dOptions): ConvGeometry {
  check(x.rank === 4 && w.rank === 4, () => `conv2d: expected x [N,C,H,W] and w [O,C,kh,kw], got [${x.shape}] and [${w.shape}]`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, C2, kh, kw] = w.shape as [number, number, number, number];
  check(C === C2, () => `conv2d: input has ${C} channels, weight expects ${C2}`);
  const p = o.padding ?? 0;
  const [pt, pb, pl, pr] = typeof p === 'number' ? [p, p, p, p] : p;
  const stride = o.stride ?? 1;
  const OH = Math.floor((H + pt + pb - kh) / stride) + 1;
  const OW = Math.floor((W + pl + pr - kw) / stride) + 1;
  check(OH > 0 && OW > 0, () => `conv2d: output would be empty for input [${x.shape}]`);
  return { N, C, H, W, O, kh, kw, stride, pt, pl, OH, OW };
}

/** WGSL: x at (n, c, ih, iw) with zero padding, ih/iw as i32. */
function gatherX(g: ConvGeometry, n: string, c: string, ih: string, iw: string): string {
  return `select(0.0, ld_x(((${n}) * ${g.C}u + (${c})) * ${g.H * g.W}u + u32(${ih}) * ${g.W}u + u32(${iw})), ${ih} >= 0 && ${ih} < ${g.H} && ${iw} >= 0 && ${iw} < ${g.W})`;
}

/*
 * Forward as GEMM: rows m = (n, oh, ow), columns o, reduction k = (c, i, j). The A element is the
 * input pixel under kernel tap (i, j) of output pixel (oh, ow), gathered on the fly (zero outside
 * the padded image); B is the weight read in its own [O, C*kh*kw] layout.
 */
function forwardSpec(g: ConvGeometry, x: Tensor, w: Tensor, bias: Tensor | undefined): GemmSpec {
  const ohw = g.OH * g.OW;
  const kk = g.kh * g.kw;
  const helpers = `fn ax(m: u32, k: u32) -> f32 {
  let n = m / ${ohw}u; let r = m % ${ohw}u; let oh = i32(r / ${g.OW}u); let ow = i32(r % ${g.OW}u);
  let c = k / ${kk}u; let t = k % ${kk}u; let ih = oh * ${g.stride} - ${g.pt} + i32(t / ${g.kw}u); let iw = ow * ${g.stride} - ${g.pl} + i32(t % ${g.kw}u);
  return ${gatherX(g, 'n', 'c', 'ih', 'iw')};
}`;
  return {
    name: 'conv2d',
    M: g.N * ohw,
    N: g.O,
    K: g.C * kk,
    batch: 1,
    decls: `${input('x', 0, x.dtype)}\n${input('w', 1, w.dtype)}\n${bias ? input('bias', 2, bias.dtype) : ''}\n${output('y', bias ? 3 : 2)}\n${helpers}`,
    loadA: 'ax(m, k)',
    loadB: `ld_w(n * ${g.C * kk}u + k)`,
    aFastK: false,
    bFastN: false,
    store: `y[(m / ${ohw}u) * ${g.O * ohw}u + n * ${ohw}u + m % ${ohw}u] = v${bias ? ' + ld_bias(n)' : ''};`,
    bytes: 0,
  };
}

/** Convolution of x [N, C, H, W] with w [O, C, kh, kw] (+ bias [O]) → [N, O, OH, OW]. */
export function conv2d(x: Tensor, w: Tensor, bias?: Tensor, o: Conv2dOptions = {}): Tensor {
  const g = geometry(x, w, o);
  const y = emptyLike(x, [g.N, g.O, g.OH, g.OW]);
  launch(gemmKernel(forwardSpec(g, x, w, bias)), bias ? [x, w, bias] : [x, w], [y]);
  record('conv2d', [x, w, bias ?? null], [y], { x, w, geo: g }, [x, w]);
  return y;
}

/** One thread per output, direct loops: the benchmark's baseline. */
export function conv2dNaive(x: Tensor, w: Tensor, bias?: Tensor, o: Conv2dOptions = {}): Tensor {
  const g = geometry(x, w, o);
  const y = emptyLike(x, [g.N, g.O, g.OH, g.OW]);
  launch(gemmNaiveKernel(forwardSpec(g, x, w, bias)), bias ? [x, w, bias] : [x, w], [y]);
  return y;
}

/*
 * dX as GEMM: rows m = (n, ih, iw), columns c, reduction k = (o, i, j). Output pixel
 * oh = (ih + pt - i) / stride contributes when that division is exact and in range, so stride 2 and
 * asymmetric padding need no special case and no col2im buffer.
 */
function dxSpec(g: ConvGeometry, w: Tensor): GemmSpec {
  const hw = g.H * g.W;
  const ohw = g.OH * g.OW;
  const kk = g.kh * g.kw;
  const helpers = `fn ag(m: u32, k: u32) -> f32 {
  let n = m / ${hw}u; let r = m % ${hw}u; let ih = i32(r / ${g.W}u); let iw = i32(r % ${g.W}u);
  let o = k / ${kk}u; let t = k % ${kk}u;
  let yh = ih + ${g.pt} - i32(t / ${g.kw}u); let yw = iw + ${g.pl} - i32(t % ${g.kw}u);
  if (yh < 0 || yw < 0 || yh % ${g.stride} != 0 || yw % ${g.stride} != 0) { return 0.0; }
  let oh = yh / ${g.stride}; let ow = yw / ${g.stride};
  if (oh >= ${g.OH} || ow >= ${g.OW}) { return 0.0; }
  return ld_g((n * ${g.O}u + o) * ${ohw}u + u32(oh) * ${g.OW}u + u32(ow));
}`;
  return {
    name: 'conv2d_dx',
    M: g.N * hw,
    N: g.C,
    K: g.O * kk,
    batch: 1,
    decls: `${input('g', 0)}\n${input('w', 1, w.dtype)}\n${output('dx', 2)}\n${helpers}`,
    loadA: 'ag(m, k)',
    loadB: `ld_w(((k / ${kk}u) * ${g.C}u + n) * ${kk}u + k % ${kk}u)`,
    aFastK: false,
    bFastN: false,
    store: `dx[(m / ${hw}u) * ${g.C * hw}u + n * ${hw}u + m % ${hw}u] = v;`,
    bytes: 0,
  };
}

/* dW as GEMM: rows o, columns (c, i, j), reduction over every output pixel (n, oh, ow). */
function dwSpec(g: ConvGeometry, x: Tensor): GemmSpec {
  const ohw = g.OH * g.OW;
  const kk = g.kh * g.kw;
  const helpers = `fn bx(k: u32, col: u32) -> f32 {
  let n = k / ${ohw}u; let r = k % ${ohw}u; let oh = i32(r / ${g.OW}u); let ow = i32(r % ${g.OW}u);
  let c = col / ${kk}u; let t = col % ${kk}u; let ih = oh * ${g.stride} - ${g.pt} + i32(t / ${g.kw}u); let iw = ow * ${g.stride} - ${g.pl} + i32(t % ${g.kw}u);
  return ${gatherX(g, 'n', 'c', 'ih', 'iw')};
}`;
  return {
    name: 'conv2d_dw',
    M: g.O,
    N: g.C * kk,
    K: g.N * ohw,
    batch: 1,
    decls: `${input('g', 0)}\n${input('x', 1, x.dtype)}\n${output('dw', 2)}\n${helpers}`,
    loadA: `ld_g((k / ${ohw}u) * ${g.O * ohw}u + m * ${ohw}u + k % ${ohw}u)`,
    loadB: 'bx(k, n)',
    aFastK: true,
    bFastN: false,
    store: `dw[m * ${g.C * kk}u + n] = v;`,
    bytes: 0,
  };
}

// y [N,O,OH,OW]:  dx [N,C,H,W] (transposed conv of dy);  dw [O,C,kh,kw] = dy ⋆ x;  dbias [O] = Σ dy.
const conv2dBackward: BackwardRule<'conv2d'> = ({ x, w, geo }, [g], needs) =>
  noGrad(() => {
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    if (needs[0]) {
      dx = emptyLike(x);
      launch(gemmKernel(dxSpec(geo, w)), [g!, w], [dx]);
    }
    if (needs[1]) {
      dw = emptyLike(w, w.shape);
      launch(gemmKernel(dwSpec(geo, x)), [g!, x], [dw]);
    }
    const db = needs[2] ? reduceTo(g!.reshape([geo.N, geo.O, geo.OH * geo.OW]), [geo.O, 1]) : null;
    return [dx, dw, db ? db.reshape([geo.O]) : null];
  });

const WG = 256;

/* One thread per output (forward) or per input (backward, summing its 2x2 block). */
const upSource = memoSource('upsample2x', (p: { N: number; H: number; W: number; back: boolean }) => {
  const n = p.back ? p.N * p.H * p.W : p.N * p.H * p.W * 4;
  const W2 = 2 * p.W;
  const body = p.back
    ? `let plane = gi / ${p.H * p.W}u; let r = gi % ${p.H * p.W}u; let h = r / ${p.W}u; let w = r % ${p.W}u;
  let base = plane * ${4 * p.H * p.W}u + 2u * h * ${W2}u + 2u * w;
  out[gi] = ld_x(base) + ld_x(base + 1u) + ld_x(base + ${W2}u) + ld_x(base + ${W2 + 1}u);`
    : `let plane = gi / ${4 * p.H * p.W}u; let r = gi % ${4 * p.H * p.W}u; let h = r / ${W2}u; let w = r % ${W2}u;
  out[gi] = ld_x(plane * ${p.H * p.W}u + (h / 2u) * ${p.W}u + w / 2u);`;
  return `${input('x', 0)}\n${output('out', 1)}\n${main1d(WG)}\n  if (gi >= ${n}u) { return; }\n  ${body}\n}`;
});

function upKernel(N: number, H: number, W: number, back: boolean): Kernel {
  const n = N * H * W * (back ? 1 : 4);
  return { name: back ? 'upsample2x_back' : 'upsample2x', source: upSource({ N, H, W, back }), workgroups: grid(Math.ceil(n / WG)), flops: back ? 3 * n : 0, bytes: 4 * 5 * N * H * W };
}

/** Nearest-neighbour 2x upsampling of [N, C, H, W] to [N, C, 2H, 2W]. */
export function upsampleNearest2x(x: Tensor): Tensor {
  check(x.rank === 4, () => `upsampleNearest2x: expected [N,C,H,W], got [${x.shape}]`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const y = emptyLike(x, [N, C, 2 * H, 2 * W]);
  launch(upKernel(N * C, H, W, false), [x], [y]);
  record('upsample2x', [x], [y], { shape: x.shape });
  return y;
}

const upsampleBackward: BackwardRule<'upsample2x'> = ({ shape }, [g]) => {
  const [N, C, H, W] = shape as [number, number, number, number];
  const dx = emptyLike(g!, shape);
  launch(upKernel(N * C, H, W, true), [g!], [dx]);
  return [dx];
};

export const convRules = { conv2d: conv2dBackward, upsample2x: upsampleBackward };
