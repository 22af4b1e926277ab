// 2-D convolution kernels (NCHW): implicit-GEMM forward, dX and dW, a split-K finish, a naive baseline, nearest 2x upsampling.
import type { DType } from '../dtype.js';
import { grid, memoSource, type Kernel } from '../kernel.js';
import { f16Directive, operand } from './matmul.js';
import { input, main1d, output, packUniforms, uniformDecl, type UniformField } from './wgsl.js';

/** Every size a conv kernel bakes in: x [N, C, H, W], w [O, C, kh, kw], y [N, O, OH, OW]; pt and pl pad top and left. */
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

/** Storage dtypes of the tensors a conv dispatch reads (x, w, the output gradient g, bias or null). */
export interface ConvDTypes {
  x: DType;
  w: DType;
  g: DType;
  bias: DType | null;
  /** A residual shaped like the forward output, added in its epilogue (a binding after the bias). */
  residual?: DType;
}

/**
 * Which GEMM a dispatch computes: the forward, one stride phase (ph, pw) of dX (input pixels with
 * ih mod stride = ph, iw mod stride = pw), or dW.
 */
export type ConvPass = { kind: 'forward' } | { kind: 'dx'; ph: number; pw: number } | { kind: 'dw' };

/** Split-K: `splits` dispatch slices, slice z covering k in [z * chunk, min(K, (z + 1) * chunk)). */
export interface Split {
  splits: number;
  chunk: number;
}

export interface ConvGemmParams {
  g: ConvGeometry;
  pass: ConvPass;
  dt: ConvDTypes;
  split: Split;
  /** Forward only, unsplit: add into what the output holds (out += result). */
  accumulate?: boolean;
  /** The device has shader-f16: f16-stored operands are read natively. */
  f16?: boolean;
  /** Output tile edge (default 64; 32 only for forward and dX): see convTile. */
  tile?: ConvTile;
}

/** The big tile's edge; forward and dX passes with few such tiles use SMALL_TILE (see convTiling). */
const TILE = 64;
const SMALL_TILE = 32;
/** Use the small tile when the big ones number fewer than this (as gemmThresholds.smallTileBelow). */
const SMALL_TILE_BELOW = 128;
const TK = 16;
/** Split K only when the tiles give fewer workgroups than this... */
const SPLIT_BELOW = 128;
/** ...aiming at about this many, with each slice at least MIN_CHUNK long, and at most MAX_SPLITS slices. */
const TARGET_GROUPS = 256;
const MIN_CHUNK = 128;
const MAX_SPLITS = 32;

const ceilDiv = (a: number, b: number) => Math.ceil(a / b);

/** Taps and offsets of dX phase (ph, pw): see the tiling comment. */
function phase(g: ConvGeometry, ph: number, pw: number) {
  const s = g.stride;
  const rh = (ph + g.pt) % s;
  const rw = (pw + g.pl) % s;
  return {
    rh,
    rw,
    th: Math.max(0, ceilDiv(g.kh - rh, s)),
    tw: Math.max(0, ceilDiv(g.kw - rw, s)),
    dh: Math.floor((ph + g.pt) / s),
    dw: Math.floor((pw + g.pl) / s),
    Hu: Math.max(0, ceilDiv(g.H - ph, s)),
    Wv: Math.max(0, ceilDiv(g.W - pw, s)),
  };
}

/** The phases of dX that own at least one input pixel (one for stride 1, up to stride² otherwise). */
export function dxPhases(g: ConvGeometry): ConvPass[] {
  const out: ConvPass[] = [];
  for (let ph = 0; ph < g.stride; ph++)
    for (let pw = 0; pw < g.stride; pw++) {
      const p = phase(g, ph, pw);
      if (p.Hu > 0 && p.Wv > 0) out.push({ kind: 'dx', ph, pw });
    }
  return out;
}

/** GEMM extents of a pass: rows M, columns N, reduction K. */
export function convGemmShape(g: ConvGeometry, pass: ConvPass): { M: number; N: number; K: number } {
  const kk = g.kh * g.kw;
  if (pass.kind === 'forward') return { M: g.N * g.OH * g.OW, N: g.O, K: g.C * kk };
  if (pass.kind === 'dw') return { M: g.O, N: g.C * kk, K: g.N * g.OH * g.OW };
  const p = phase(g, pass.ph, pass.pw);
  return { M: g.N * p.Hu * p.Wv, N: g.C, K: g.O * p.th * p.tw };
}

/** How many K slices a GEMM of these extents runs as with `tile` (see the tiling comment). */
export function splitK(M: number, N: number, K: number, tile: ConvTile = TILE): Split {
  const tiles = ceilDiv(M, tile) * ceilDiv(N, tile);
  const splits = tiles >= SPLIT_BELOW ? 1 : Math.max(1, Math.min(MAX_SPLITS, ceilDiv(TARGET_GROUPS, tiles), Math.floor(K / MIN_CHUNK)));
  return withSplits(K, splits);
}

/** Output tile edges the conv GEMMs come in. */
export type ConvTile = 32 | 64;

/** The tile of a pass: the small one for forward and dX GEMMs with few big tiles; dW (vec4 column gathers) keeps 64. */
export function convTile(kind: ConvPass['kind'], M: number, N: number): ConvTile {
  return kind !== 'dw' && ceilDiv(M, TILE) * ceilDiv(N, TILE) < SMALL_TILE_BELOW ? SMALL_TILE : TILE;
}

/** A reduction of length K cut into `splits` slices of whole K-steps (trailing slices may be empty). */
export function withSplits(K: number, splits: number): Split {
  return { splits, chunk: Math.max(TK, ceilDiv(ceilDiv(K, splits), TK) * TK) };
}

/** Elements of the tensor a pass writes (each split slice writes one such copy). */
export function convOutSize(g: ConvGeometry, pass: ConvPass): number {
  if (pass.kind === 'forward') return g.N * g.O * g.OH * g.OW;
  if (pass.kind === 'dw') return g.O * g.C * g.kh * g.kw;
  return g.N * g.C * g.H * g.W;
}

/** What a conv GEMM's source depends on: the pass kind, the kernel size, dtypes and the epilogue. Sizes are uniforms. */
interface ConvCode {
  kind: ConvPass['kind'];
  kh: number;
  kw: number;
  dt: ConvDTypes;
  accumulate: boolean;
  /** f16-stored x, w or g are read as `array<f16>` (the device has shader-f16). */
  f16: boolean;
  tile: ConvTile;
}

/** The uniform fields every conv GEMM declares (one struct for all passes; the dX phase's fields are 0 elsewhere). */
const CONV_FIELDS: UniformField[] = [
  ...['M', 'N', 'K', 'tilesN', 'tilesM', 'total', 'chunk', 'slice', 'C', 'H', 'W', 'O', 'OH', 'OW'].map((n) => [n, 'u32'] as UniformField),
  ...['stride', 'pt', 'pl'].map((n) => [n, 'i32'] as UniformField),
  ...['ph', 'pw', 'rh', 'rw', 'th', 'tw', 'Hu', 'Wv'].map((n) => [n, 'u32'] as UniformField),
  ['dh', 'i32'],
  ['dw', 'i32'],
];

/** The parts of one implicit GEMM that differ between passes; `gemmShell` assembles the rest. */
interface Shell {
  /** Lanes (tx) walk output rows; else output columns. Chosen so that stores coalesce. */
  rowLanes: boolean;
  decls: string;
  /** Per-thread set-up before the K loop (gather coordinates that do not change along K). */
  prologue: string;
  /** Fills As[k * (T + 1) + m] and Bs[k * (T + 1) + n] for the K-step at k0, zero outside [0, kEnd). */
  stage: string;
  /** Statement storing `v` at GEMM position (m, n), adding `zOff` (the split slice's offset) to its index. */
  store: string;
}

/*
 * Tiling. Each pass is a GEMM C[M, N] = A[M, K] B[K, N] whose operands are never formed in memory
 * (no im2col, no col2im): every K-step gathers them from the tensors in place.
 *   forward  M = (n, oh, ow)  N = o          K = (c, i, j)   A = x under tap (i, j), zero in the padding; B = w
 *   dX       M = (n, u, v)    N = c          K = (o, a, b)   A = dY around the pixel; B = w, taps of the phase
 *   dW       M = o            N = (c, i, j)  K = (n, oh, ow) A = dY; B = x gathered as in forward
 * A workgroup of 16x16 threads owns a 64x64 tile of C and each thread a 4x4 register block (four
 * vec4 accumulators) at rows r + 16i, columns c + 16j. Per K-step of 16, the 256 threads stage a
 * 64x16 slice of A and a 16x64 slice of B into workgroup memory (2 x 16 x 65 floats = 8.1 KiB, k-major,
 * the pad word keeping stores off one bank), 4 elements each, with consecutive lanes on whichever
 * axis is contiguous in memory (pixels for x and dY, k for w), then run 16 rank-1 updates from
 * workgroup memory. Each thread decodes the gather coordinates that do not change along K (its
 * pixel for A, its tap for dW's B) once, before the K loop. The lane axis of the register block
 * follows the output's contiguous axis (pixels for forward and dX, (c, i, j) for dW), so stores
 * coalesce. Ragged M, N and K are zero-filled on load and masked on store; the forward's epilogue
 * adds the bias and a residual, or adds into the output. Workgroups are numbered over (split, tile
 * row, tile column) on a 2-D grid. Every size (the GEMM's extents, the image geometry, stride,
 * padding, the split and the dX phase) is a uniform, so the source depends only on the pass, the
 * kernel size (its divisions by kh*kw and kw stay constant), the dtypes and the epilogue.
 * Split-K: when the tiles give fewer than 128 workgroups (small deep layers, dW of a narrow LoRA
 * conv, whose K is every output pixel), K is cut into up to 32 slices of at least 128 and slice z
 * writes its own copy of the output into a workspace that the split-sum pass adds up; per GEMM
 * the workspace stays under (256 + 128) x 64 x 64 floats (6 MiB).
 * dX of a stride-s conv: input row ih takes tap i from output row (ih + pt - i) / s only when that
 * divides exactly, so the input pixels are split into s x s phases by (ih mod s, iw mod s). In phase
 * ph only the taps i = rh + a*s act (rh = (ph + pt) mod s), reading output row u + dh - a for input
 * row ih = ph + s*u (dh = floor((ph + pt) / s)); each phase is one stride-1 dispatch, so no multiply
 * is spent on the zero terms and asymmetric padding needs no special case. Stride 1 is one phase.
 */

function gemmShell(s: Shell, T: ConvTile): string {
  const R = [0, 1, 2, 3];
  const D = T / 4;
  const P = T + 1;
  // Lanes = the axis tx walks; the register block is acc[other axis][lane axis component].
  const [lane, other] = s.rowLanes ? ['As', 'Bs'] : ['Bs', 'As'];
  const inner = `let lr = k * ${P}u + tx; let orow = k * ${P}u + ty;
        let lv = vec4<f32>(${R.map((i) => `${lane}[lr + ${D * i}u]`).join(', ')});
${R.map((j) => `        acc${j} += lv * ${other}[orow + ${D * j}u];`).join('\n')}`;
  const stores = R.map((j) => {
    const [m, n] = s.rowLanes ? [`m0 + tx + ${D}u * i`, `n0 + ty + ${D * j}u`] : [`m0 + ty + ${D * j}u`, `n0 + tx + ${D}u * i`];
    return `  for (var i = 0u; i < 4u; i++) {
    let m = ${m}; let n = ${n};
    if (m < u.M && n < u.N) { let v = acc${j}[i]; ${s.store} }
  }`;
  }).join('\n');
  return `${s.decls}
var<workgroup> As: array<f32, ${TK * P}>;
var<workgroup> Bs: array<f32, ${TK * P}>;
@compute @workgroup_size(${D}, ${D})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let id = wid.x + wid.y * nwg.x;
  if (id >= u.total) { return; }
  let n0 = (id % u.tilesN) * ${T}u;
  let m0 = ((id / u.tilesN) % u.tilesM) * ${T}u;
  let z = id / (u.tilesN * u.tilesM);
  let zOff = z * u.slice;
  let tx = lid3.x;
  let ty = lid3.y;
  let kBegin = z * u.chunk; let kEnd = min(u.K, kBegin + u.chunk);
  let ohw = u.OH * u.OW; let hw = u.H * u.W;
  ${s.prologue}
${R.map((j) => `  var acc${j} = vec4<f32>(0.0);`).join('\n')}
  for (var k0 = kBegin; k0 < kEnd; k0 += ${TK}u) {
    ${s.stage}
    workgroupBarrier();
    for (var k = 0u; k < ${TK}u; k++) {
        ${inner}
    }
    workgroupBarrier();
  }
${stores}
}`;
}

/** WGSL condition that (ih, iw) lies inside the image. */
const IN_IMAGE = 'ih >= 0 && ih < i32(u.H) && iw >= 0 && iw < i32(u.W)';

/** Storage bindings then the uniforms, after `enable f16;` when an operand is read natively. */
function decls(c: ConvCode, bufs: string[]): string {
  return f16Directive(c.f16, [c.dt.x, c.dt.w, c.dt.g]) + [...bufs, uniformDecl(bufs.length, CONV_FIELDS)].join('\n');
}

/** The forward's store: its epilogue adds the bias and residual or adds into out (when split, the split-sum does). */
function forwardStore(c: ConvCode): { decls: string; store: string } {
  const extra = [c.dt.bias ? ['bias', c.dt.bias] : null, c.dt.residual ? ['res', c.dt.residual] : null].filter((e) => e !== null);
  const bufs = [operand('x', 0, c.dt.x, c.f16), operand('w', 1, c.dt.w, c.f16), ...extra.map(([name, d], i) => input(name!, 2 + i, d as DType)), output('out', 2 + extra.length)];
  const add = extra.map(([name]) => (name === 'bias' ? ' + ld_bias(n)' : ' + ld_res(oi)')).join('');
  const idx = 'let oi = zOff + (m / ohw) * u.O * ohw + n * ohw + m % ohw;';
  return { decls: decls(c, bufs), store: `${idx} out[oi] ${c.accumulate ? '+=' : '='} v${add};` };
}

/** Staging geometry of a T-tile with (T/4)^2 threads: `loads` elements per thread per slice, rows `step` apart. */
function staging(T: ConvTile) {
  const threads = (T / 4) ** 2;
  return { P: T + 1, loads: (T * TK) / threads, aStep: threads / T, bStep: threads / TK };
}

function forwardShell(c: ConvCode): Shell {
  const kk = c.kh * c.kw;
  const { P, loads, aStep, bStep } = staging(c.tile);
  const tap = kk === 1 ? 'let ci = k; let ih = ih0; let iw = iw0;' : `let ci = k / ${kk}u; let t = k % ${kk}u; let ih = ih0 + i32(t / ${c.kw}u); let iw = iw0 + i32(t % ${c.kw}u);`;
  const stage = `for (var s = 0u; s < ${loads}u; s++) {
      {
        let kl = kq + ${aStep}u * s; let k = k0 + kl;
        var v = 0.0;
        if (aValid && k < kEnd) {
          ${tap}
          if (${IN_IMAGE}) { v = ld_x(xBase + ci * hw + u32(ih) * u.W + u32(iw)); }
        }
        As[kl * ${P}u + aml] = v;
      }
      {
        let bn = bq + ${bStep}u * s; let k = k0 + bk;
        var v = 0.0;
        if (n0 + bn < u.N && k < kEnd) { v = ld_w((n0 + bn) * u.K + k); }
        Bs[bk * ${P}u + bn] = v;
      }
    }`;
  return {
    rowLanes: true,
    ...forwardStore(c),
    prologue: `let aml = lid % ${c.tile}u; let kq = lid / ${c.tile}u;
  let am = m0 + aml; let aValid = am < u.M;
  let ap = am % ohw;
  let ih0 = i32(ap / u.OW) * u.stride - u.pt; let iw0 = i32(ap % u.OW) * u.stride - u.pl;
  let xBase = (am / ohw) * u.C * hw;
  let bk = lid % ${TK}u; let bq = lid / ${TK}u;`,
    stage,
  };
}

function dxShell(c: ConvCode): Shell {
  const kk = c.kh * c.kw;
  const { P, loads, aStep } = staging(c.tile);
  // A phase no tap reaches (a 1x1 kernel at stride 2) has K = 0: the loop never runs and stores
  // zeros, but its body still names g and w so that the bindings stay in the pipeline layout.
  const stage = `for (var s = 0u; s < ${loads}u; s++) {
      let kl = kq + ${aStep}u * s; let k = k0 + kl;
      var av = 0.0;
      var bv = 0.0;
      if (k < kEnd) {
        let o = k / taps; let t = k % taps; let a = t / u.tw; let b = t % u.tw;
        let oh = yh0 - i32(a); let ow = yw0 - i32(b);
        if (aValid && oh >= 0 && oh < i32(u.OH) && ow >= 0 && ow < i32(u.OW)) { av = ld_g(gBase + o * ohw + u32(oh) * u.OW + u32(ow)); }
        if (bValid) { bv = ld_w(o * u.C * ${kk}u + wBase + (a * ${c.kw}u + b) * su); }
      }
      As[kl * ${P}u + aml] = av;
      Bs[kl * ${P}u + aml] = bv;
    }`;
  return {
    rowLanes: true,
    decls: decls(c, [operand('g', 0, c.dt.g, c.f16), operand('w', 1, c.dt.w, c.f16), output('out', 2)]),
    prologue: `let aml = lid % ${c.tile}u; let kq = lid / ${c.tile}u;
  let su = u32(u.stride); let taps = u.th * u.tw; let uv = u.Hu * u.Wv;
  let am = m0 + aml; let aValid = am < u.M;
  let ar = am % uv;
  let yh0 = i32(ar / u.Wv) + u.dh; let yw0 = i32(ar % u.Wv) + u.dw;
  let gBase = (am / uv) * u.O * ohw;
  let bc = n0 + aml; let bValid = bc < u.C;
  let wBase = bc * ${kk}u + u.rh * ${c.kw}u + u.rw;`,
    stage,
    store: `let r = m % uv; out[zOff + ((m / uv) * u.C + n) * hw + (u.ph + su * (r / u.Wv)) * u.W + u.pw + su * (r % u.Wv)] = v;`,
  };
}

function dwShell(c: ConvCode): Shell {
  const kk = c.kh * c.kw;
  // The four columns (c, i, j) this thread stages for B, decoded once.
  const taps = `let q = vec4<u32>(n0 + lq) + vec4<u32>(0u, 16u, 32u, 48u); let qv = q < vec4<u32>(u.N);
  let xo = (q / ${kk}u) * hw; let di = vec4<i32>((q % ${kk}u) / ${c.kw}u) - u.pt; let dj = vec4<i32>(q % ${c.kw}u) - u.pl;`;
  const slots = `for (var s = 0u; s < 4u; s++) {
      let row = lq + 16u * s;
      var av = 0.0;
      if (rv && m0 + row < u.M) { av = ld_g(gOff + (m0 + row) * ohw); }
      As[kl * ${TILE + 1}u + row] = av;
      var bv = 0.0;
      if (rv && qv[s]) {
        let ih = oh + di[s]; let iw = ow + dj[s];
        if (${IN_IMAGE}) { bv = ld_x(xOff + xo[s] + u32(ih) * u.W + u32(iw)); }
      }
      Bs[kl * ${TILE + 1}u + row] = bv;
    }`;
  return {
    rowLanes: false,
    decls: decls(c, [operand('g', 0, c.dt.g, c.f16), operand('x', 1, c.dt.x, c.f16), output('out', 2)]),
    prologue: `let kl = lid % ${TK}u; let lq = lid / ${TK}u;
  ${taps}`,
    stage: `let r = k0 + kl; let rv = r < kEnd;
    let p = r % ohw;
    let oh = i32(p / u.OW) * u.stride; let ow = i32(p % u.OW) * u.stride;
    let gOff = (r / ohw) * u.O * ohw + p; let xOff = (r / ohw) * u.C * hw;
    ${slots}`,
    store: `out[zOff + m * u.N + n] = v;`,
  };
}

const convSource = memoSource('conv2d', (c: ConvCode) => {
  if (c.kind === 'forward') return gemmShell(forwardShell(c), c.tile);
  if (c.kind === 'dw') return gemmShell(dwShell(c), TILE);
  return gemmShell(dxShell(c), c.tile);
});

/** The uniform values of one dispatch, in CONV_FIELDS order. */
function convUniforms(p: ConvGemmParams, groups: number, T: ConvTile): Uint32Array {
  const { g, pass, split } = p;
  const { M, N, K } = convGemmShape(g, pass);
  const ph = pass.kind === 'dx' ? phase(g, pass.ph, pass.pw) : null;
  const phaseVals = ph && pass.kind === 'dx' ? [pass.ph, pass.pw, ph.rh, ph.rw, ph.th, ph.tw, ph.Hu, ph.Wv, ph.dh, ph.dw] : [0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
  const slice = split.splits === 1 ? 0 : convOutSize(g, pass);
  const values = [M, N, K, ceilDiv(N, T), ceilDiv(M, T), groups, split.chunk, slice, g.C, g.H, g.W, g.O, g.OH, g.OW, g.stride, g.pt, g.pl, ...phaseVals];
  return packUniforms(CONV_FIELDS, values);
}

const bytesOf = (d: DType) => (d === 'f32' ? 4 : 2);

/** One implicit-GEMM dispatch of a conv pass (bindings: forward x, w[, bias], out; dX g, w, out; dW g, x, out). */
export function convGemmKernel(p: ConvGemmParams): Kernel {
  const { g, pass, dt, split } = p;
  const { M, N, K } = convGemmShape(g, pass);
  const T: ConvTile = pass.kind === 'dw' ? TILE : (p.tile ?? TILE);
  const groups = ceilDiv(M, T) * ceilDiv(N, T) * split.splits;
  const xBytes = g.N * g.C * g.H * g.W * bytesOf(dt.x);
  const gBytes = g.N * g.O * g.OH * g.OW * bytesOf(dt.g);
  const written = M * N * split.splits * 4;
  const name = pass.kind === 'forward' ? 'conv2d' : `conv2d_${pass.kind}`;
  const whole = pass.kind === 'forward' && split.splits === 1;
  // Split forwards leave the epilogue to the split-sum: none of it is bound here.
  const dtc: ConvDTypes = whole ? dt : { x: dt.x, w: dt.w, g: dt.g, bias: null };
  const cdt = pass.kind === 'forward' ? dtc : { ...dt, bias: null };
  const read = pass.kind === 'forward' ? [cdt.x, cdt.w] : pass.kind === 'dx' ? [cdt.g, cdt.w] : [cdt.g, cdt.x];
  const code: ConvCode = { kind: pass.kind, kh: g.kh, kw: g.kw, dt: cdt, accumulate: whole && !!p.accumulate, f16: !!p.f16 && read.includes('f16'), tile: T };
  const fused = whole && dt.bias !== null;
  const adds = (fused ? 1 : 0) + (whole && dt.residual ? 1 : 0) + (whole && p.accumulate ? 1 : 0);
  const epiBytes = (fused ? N * bytesOf(dt.bias!) : 0) + (whole && dt.residual ? M * N * bytesOf(dt.residual) : 0) + (whole && p.accumulate ? M * N * 4 : 0);
  const readBytes = pass.kind === 'forward' ? xBytes + N * K * bytesOf(dt.w) + epiBytes : pass.kind === 'dx' ? gBytes + N * K * bytesOf(dt.w) : gBytes + xBytes;
  return { name, source: convSource(code), workgroups: grid(groups), flops: 2 * M * N * K + adds * M * N, bytes: readBytes + written, uniforms: convUniforms(p, groups, T) };
}

const WG = 256;

/**
 * Parameters of the split-K finish: out[i] = sum over z of ws[z * size + i] (+ bias[(i / plane) %
 * channels]) (+ res[i]), or out[i] += that sum when accumulating.
 */
export interface SplitSumParams {
  size: number;
  splits: number;
  bias: DType | null;
  plane: number;
  channels: number;
  residual?: DType;
  accumulate?: boolean;
}

/*
 * Tiling: one thread per output element, reading its `splits` partial sums (one per K slice, each
 * a full copy of the output, so a warp's reads are contiguous in every slice) and adding the bias.
 * Sizes are uniforms.
 */
const SPLITSUM_FIELDS: UniformField[] = [
  ['size', 'u32'],
  ['splits', 'u32'],
  ['plane', 'u32'],
  ['channels', 'u32'],
];

const splitSumSource = memoSource('conv2d_splitsum', (p: Pick<SplitSumParams, 'bias' | 'residual' | 'accumulate'>) => {
  const extra = [p.bias ? input('bias', 1, p.bias) : '', p.residual ? input('res', p.bias ? 2 : 1, p.residual) : ''].filter(Boolean);
  const init = [p.bias ? 'ld_bias((gi / u.plane) % u.channels)' : '', p.residual ? 'ld_res(gi)' : '', p.accumulate ? 'out[gi]' : ''].filter(Boolean);
  return `${input('ws', 0)}
${extra.join('\n')}
${output('out', 1 + extra.length)}
${uniformDecl(2 + extra.length, SPLITSUM_FIELDS)}
${main1d(WG)}
  if (gi >= u.size) { return; }
  var v = ${init.length ? init.join(' + ') : '0.0'};
  for (var z = 0u; z < u.splits; z++) { v += ld_ws(z * u.size + gi); }
  out[gi] = v;
}`;
});

/** Sum split-K slices into the output (bindings: ws[, bias][, res], out). */
export function splitSumKernel(p: SplitSumParams): Kernel {
  const adds = (p.bias ? 1 : 0) + (p.residual ? 1 : 0) + (p.accumulate ? 1 : 0);
  return {
    name: 'conv2d_splitsum',
    source: splitSumSource({ bias: p.bias, residual: p.residual, accumulate: p.accumulate }),
    uniforms: packUniforms(SPLITSUM_FIELDS, [p.size, p.splits, p.plane, p.channels]),
    workgroups: grid(ceilDiv(p.size, WG)),
    flops: p.size * (p.splits - 1 + adds),
    bytes: 4 * p.size * (p.splits + 1 + (p.accumulate ? 1 : 0)) + (p.bias ? p.channels * bytesOf(p.bias) : 0) + (p.residual ? p.size * bytesOf(p.residual) : 0),
  };
}

/*
 * Tiling: none, on purpose. One thread per output element walks its C x kh x kw window straight
 * from storage; this is the baseline the benchmark's "vs naive" ratio divides by.
 */
const naiveSource = memoSource('conv2d_naive', (p: { g: ConvGeometry; dt: ConvDTypes }) => {
  const { g, dt } = p;
  const ohw = g.OH * g.OW;
  const n = g.N * g.O * ohw;
  return `${input('x', 0, dt.x)}
${input('w', 1, dt.w)}
${dt.bias ? input('bias', 2, dt.bias) : ''}
${output('out', dt.bias ? 3 : 2)}
${main1d(WG)}
  if (gi >= ${n}u) { return; }
  let img = gi / ${g.O * ohw}u; let o = (gi / ${ohw}u) % ${g.O}u; let p = gi % ${ohw}u;
  let ih0 = i32(p / ${g.OW}u) * ${g.stride} - ${g.pt}; let iw0 = i32(p % ${g.OW}u) * ${g.stride} - ${g.pl};
  var acc = 0.0;
  for (var c = 0u; c < ${g.C}u; c++) {
    for (var i = 0; i < ${g.kh}; i++) {
      for (var j = 0; j < ${g.kw}; j++) {
        let ih = ih0 + i; let iw = iw0 + j;
        if (ih >= 0 && ih < ${g.H} && iw >= 0 && iw < ${g.W}) {
          acc += ld_x(((img * ${g.C}u + c) * ${g.H}u + u32(ih)) * ${g.W}u + u32(iw)) * ld_w(((o * ${g.C}u + c) * ${g.kh}u + u32(i)) * ${g.kw}u + u32(j));
        }
      }
    }
  }
  out[gi] = acc${dt.bias ? ' + ld_bias(o)' : ''};
}`;
});

/** The naive forward (bindings: x, w[, bias], out). */
export function conv2dNaiveKernel(g: ConvGeometry, dt: ConvDTypes): Kernel {
  const n = g.N * g.O * g.OH * g.OW;
  const K = g.C * g.kh * g.kw;
  return {
    name: 'conv2d_naive',
    source: naiveSource({ g, dt }),
    workgroups: grid(ceilDiv(n, WG)),
    flops: 2 * n * K + (dt.bias ? n : 0),
    bytes: g.N * g.C * g.H * g.W * bytesOf(dt.x) + g.O * K * bytesOf(dt.w) + (dt.bias ? g.O * bytesOf(dt.bias) : 0) + 4 * n,
  };
}

/** Nearest 2x upsampling over `planes` planes of H x W (backward: each input sums its 2x2 block). */
export interface UpsampleParams {
  planes: number;
  H: number;
  W: number;
  backward: boolean;
  dtype: DType;
}

/*
 * Tiling: one thread per input pixel. Forward reads it once and writes its 2x2 block as two pairs
 * of adjacent words, so a warp writes two contiguous runs; backward reads the same two pairs and
 * writes their sum, so both directions move each element once.
 */
const upsampleSource = memoSource('upsample2x', (p: UpsampleParams) => {
  const W2 = 2 * p.W;
  const index = `let plane = gi / ${p.H * p.W}u; let r = gi % ${p.H * p.W}u;
  let top = plane * ${4 * p.H * p.W}u + (r / ${p.W}u) * ${2 * W2}u + 2u * (r % ${p.W}u);`;
  const body = p.backward
    ? `out[gi] = (ld_x(top) + ld_x(top + 1u)) + (ld_x(top + ${W2}u) + ld_x(top + ${W2 + 1}u));`
    : `let v = ld_x(gi);
  out[top] = v; out[top + 1u] = v; out[top + ${W2}u] = v; out[top + ${W2 + 1}u] = v;`;
  return `${input('x', 0, p.dtype)}
${output('out', 1)}
${main1d(WG)}
  if (gi >= ${p.planes * p.H * p.W}u) { return; }
  ${index}
  ${body}
}`;
});

export function upsampleKernel(p: UpsampleParams): Kernel {
  const n = p.planes * p.H * p.W;
  return {
    name: p.backward ? 'upsample2x_backward' : 'upsample2x',
    source: upsampleSource(p),
    workgroups: grid(ceilDiv(n, WG)),
    flops: p.backward ? 3 * n : 0,
    bytes: p.backward ? 4 * n * 4 + 4 * n : n * bytesOf(p.dtype) + 4 * n * 4,
  };
}
