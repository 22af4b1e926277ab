// One tiled GEMM skeleton for matmul, linear and implicit-GEMM convolution: the caller supplies how
// to load an A element (b, m, k), a B element (b, k, n) and how to store a result (b, m, n, v).
import { MAX_GROUPS, memoSource, type Kernel } from '../kernel.js';

export interface GemmSpec {
  name: string;
  M: number;
  N: number;
  K: number;
  batch: number;
  /** WGSL binding declarations (inputs, then outputs) and helper functions. */
  decls: string;
  /** WGSL expression of the A element at (b, m, k), all u32 and in range. */
  loadA: string;
  /** WGSL expression of the B element at (b, k, n). */
  loadB: string;
  /** Whether consecutive k are adjacent in memory for A (row-major A); else consecutive m are. */
  aFastK: boolean;
  /** Whether consecutive n are adjacent in memory for B; else consecutive k are. */
  bFastN: boolean;
  /** WGSL statements storing `v` at (b, m, n). */
  store: string;
  /** Extra bytes the loads touch beyond the operands (for honest byte counts). */
  bytes: number;
}

const TM = 64;
const TN = 64;
const TK = 16;

/*
 * Tiling: a workgroup of 16x16 threads computes a 64x64 tile of C. Each K-step of 16 loads a
 * 64x16 slab of A and a 16x64 slab of B into workgroup memory (8 KiB), each thread loading 4
 * elements of each along the operand's contiguous axis so loads coalesce; then every thread
 * accumulates a 4x4 register block whose rows are ty + 16i and columns tx + 16j, so neighbouring
 * threads read neighbouring shared-memory words and store neighbouring outputs. Ragged edges are
 * zero-filled on load and masked on store. Batches (and heads) run along workgroups.z.
 */
const gemmSource = memoSource('gemm', (s: Omit<GemmSpec, 'bytes' | 'name'>) => {
  const aIdx = s.aFastK ? 'let am = e / 16u; let ak = e % 16u;' : 'let am = e % 64u; let ak = e / 64u;';
  const bIdx = s.bFastN ? 'let bk = e / 64u; let bn = e % 64u;' : 'let bn = e / 16u; let bk = e % 16u;';
  const R = [0, 1, 2, 3];
  // Fully unrolled: register blocks indexed by constants stay in registers on every compiler.
  const loads = R.map((i) => `    {
      let e = tid + ${i * 256}u;
      ${aIdx}
      var av = 0.0;
      if (m0 + am < ${s.M}u && k0 + ak < ${s.K}u) { av = loadA(b, m0 + am, k0 + ak); }
      As[ak * ${TM}u + am] = av;
      ${bIdx}
      var bv = 0.0;
      if (k0 + bk < ${s.K}u && n0 + bn < ${s.N}u) { bv = loadB(b, k0 + bk, n0 + bn); }
      Bs[bk * ${TN}u + bn] = bv;
    }`).join('\n');
  const decl = R.flatMap((i) => R.map((j) => `var c${i}${j} = 0.0;`)).join(' ');
  const inner = `${R.map((i) => `let a${i} = As[kk * ${TM}u + lid.y + ${16 * i}u];`).join(' ')}
      ${R.map((j) => `let b${j} = Bs[kk * ${TN}u + lid.x + ${16 * j}u];`).join(' ')}
      ${R.flatMap((i) => R.map((j) => `c${i}${j} = fma(a${i}, b${j}, c${i}${j});`)).join(' ')}`;
  const stores = R.flatMap((i) => R.map((j) => `  {
    let m = m0 + lid.y + ${16 * i}u; let n = n0 + lid.x + ${16 * j}u;
    if (m < ${s.M}u && n < ${s.N}u) { let v = c${i}${j}; ${s.store} }
  }`)).join('\n');
  return `${s.decls}
var<workgroup> As: array<f32, ${TK * TM}>;
var<workgroup> Bs: array<f32, ${TK * TN}>;
fn loadA(b: u32, m: u32, k: u32) -> f32 { return ${s.loadA}; }
fn loadB(b: u32, k: u32, n: u32) -> f32 { return ${s.loadB}; }
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.z;
  let m0 = wid.y * ${TM}u;
  let n0 = wid.x * ${TN}u;
  let tid = lid.y * 16u + lid.x;
  ${decl}
  for (var k0 = 0u; k0 < ${s.K}u; k0 += ${TK}u) {
${loads}
    workgroupBarrier();
    for (var kk = 0u; kk < ${TK}u; kk++) {
      ${inner}
    }
    workgroupBarrier();
  }
${stores}
}`;
});

/** The tiled kernel for a GEMM spec. */
export function gemmKernel(s: GemmSpec): Kernel {
  const gx = Math.ceil(s.N / TN);
  const gy = Math.ceil(s.M / TM);
  if (gx > MAX_GROUPS || gy > MAX_GROUPS || s.batch > MAX_GROUPS) throw new Error(`${s.name}: GEMM ${s.M}x${s.N} x${s.batch} exceeds the dispatch limits`);
  const { name, bytes, ...src } = s;
  return {
    name,
    source: gemmSource(src),
    workgroups: [gx, gy, s.batch],
    flops: 2 * s.M * s.N * s.K * s.batch,
    bytes: bytes + 4 * s.batch * (s.M * s.K + s.K * s.N + s.M * s.N),
  };
}

/*
 * Naive reference kernel: one thread per output element, a plain loop over K with no reuse.
 * It exists only so the benchmark can report the tiled kernel's speed-up in the same run.
 */
const naiveSource = memoSource('gemm_naive', (s: Omit<GemmSpec, 'bytes' | 'name' | 'aFastK' | 'bFastN'>) => `${s.decls}
fn loadA(b: u32, m: u32, k: u32) -> f32 { return ${s.loadA}; }
fn loadB(b: u32, k: u32, n: u32) -> f32 { return ${s.loadB}; }
@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let b = g.z;
  let m = g.y;
  let n = g.x;
  if (m >= ${s.M}u || n >= ${s.N}u) { return; }
  var v = 0.0;
  for (var k = 0u; k < ${s.K}u; k++) { v = fma(loadA(b, m, k), loadB(b, k, n), v); }
  ${s.store}
}`);

export function gemmNaiveKernel(s: GemmSpec): Kernel {
  const { name, bytes, aFastK: _a, bFastN: _b, ...src } = s;
  return {
    name: `${name}_naive`,
    source: naiveSource(src),
    workgroups: [Math.ceil(s.N / 8), Math.ceil(s.M / 8), s.batch],
    flops: 2 * s.M * s.N * s.K * s.batch,
    bytes: bytes + 4 * s.batch * (s.M * s.K + s.K * s.N + s.M * s.N),
  };
}
