// Subgroup reductions (norms, sums, softmax) equal float64 and the workgroup-memory path; the layout probe; the fallback.
import { describe, expect, it } from 'vitest';
import { backward } from '../grad.js';
import { lanesPerRow, normForwardKernel } from '../kernels/norm.js';
import { assertClose, randomArray } from '../testing/allclose.js';
import { testBackend, testGpu } from '../testing/gpu.js';
import { layoutOk, subgroupsFor } from '../subgroups.js';
import { scope, tensor, type Tensor } from '../tensor.js';
import type { GpuBackend } from '../backend.js';
import { sum } from './elementwise.js';
import { groupNorm, layerNorm } from './norm.js';
import { softmax } from './softmax.js';

/** Float64 norm of R rows of E elements, element e of row r in channel chan(r, e): y and the VJP for x, w and b. */
function refNorm(x: Float64Array, R: number, E: number, chan: (r: number, e: number) => number, w: Float64Array, b: Float64Array, g: Float64Array) {
  const y = new Float64Array(x.length), dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length), db = new Float64Array(w.length);
  for (let r = 0; r < R; r++) {
    const row = x.subarray(r * E, (r + 1) * E);
    const m = row.reduce((a, v) => a + v, 0) / E;
    const rs = 1 / Math.sqrt(row.reduce((a, v) => a + (v - m) ** 2, 0) / E + 1e-5);
    let s1 = 0, s2 = 0;
    for (let e = 0; e < E; e++) {
      const i = r * E + e, c = chan(r, e), xh = (x[i]! - m) * rs;
      y[i] = xh * w[c]! + b[c]!;
      s1 += g[i]! * w[c]!;
      s2 += g[i]! * w[c]! * xh;
      dw[c] = dw[c]! + g[i]! * xh;
      db[c] = db[c]! + g[i]!;
    }
    for (let e = 0; e < E; e++) {
      const i = r * E + e;
      dx[i] = rs * (g[i]! * w[chan(r, e)]! - s1 / E - ((x[i]! - m) * rs * s2) / E);
    }
  }
  return [y, dx, dw, db];
}

/** Float64 softmax over rows of n and its VJP. */
function refSoftmax(x: Float64Array, n: number, g: Float64Array) {
  const y = new Float64Array(x.length), dx = new Float64Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    const row = x.subarray(r * n, (r + 1) * n);
    const m = Math.max(...row);
    const z = row.reduce((a, v) => a + Math.exp(v - m), 0);
    let dot = 0;
    for (let e = 0; e < n; e++) dot += (y[r * n + e] = Math.exp(row[e]! - m) / z) * g[r * n + e]!;
    for (let e = 0; e < n; e++) dx[r * n + e] = y[r * n + e]! * (g[r * n + e]! - dot);
  }
  return [y, dx];
}

interface Case {
  name: string;
  inputs: { shape: number[]; data: Float64Array }[];
  /** Elements of the output. */
  out: number;
  /** How far the two paths may differ, where not PATHS. */
  pathTol?: { atol: number; rtol: number };
  forward: (xs: Tensor[]) => Tensor;
  /** Float64 forward output, then the gradient of each input, for output gradient g. */
  reference: (xs: Float64Array[], g: Float64Array) => Float64Array[];
}

/** Forward and every input's gradient for output gradient g, on the backend as it is (subgroups or not). */
async function run(b: GpuBackend, c: Case, g: Float64Array): Promise<Float32Array[]> {
  const xs = c.inputs.map((i) => {
    const t = tensor(b, i.data, i.shape);
    t.requiresGrad = true;
    return t;
  });
  const y = scope(() => c.forward(xs));
  const seed = tensor(b, g, y.shape);
  backward(y, seed);
  const out = [await y.read(), ...(await Promise.all(xs.map((x) => x.grad!.read())))];
  for (const t of [y, seed, ...xs]) t.dispose();
  return out;
}

/** n·E values about `offset`, rounded to f32 (as uploaded) so the float64 reference sees the same inputs. */
const rows = (n: number, E: number, seed: number, offset = 0, scale = 1) => randomArray(n * E, seed).map((v) => Math.fround(scale * v + offset));
const affine = (C: number, seed: number) => [{ shape: [C], data: randomArray(C, seed, 0.5, 1.5) }, { shape: [C], data: randomArray(C, seed + 1) }];

const CASES: Case[] = [
  {
    // E = 8·144 = 1,152 per row: 256 lanes; mean 100 so the Welford merge's cancellation would show.
    name: 'group norm, 2x32x12x12, 4 groups, mean 100 (256 lanes a row, dweight by channel)',
    inputs: [{ shape: [2, 32, 12, 12], data: rows(2 * 32, 144, 3, 100) }, ...affine(32, 5)],
    out: 2 * 32 * 144,
    // One f32 ulp of a mean of 100 is 7.6e-6, about 2e-5 at the output after rstd·w: the paths may differ by two.
    pathTol: { atol: 4e-5, rtol: 2e-4 },
    forward: ([x, w, bb]) => groupNorm(x!, 4, w!, bb!, 1e-5),
    reference: ([x, w, bb], g) => refNorm(x!, 8, 1152, (r, e) => (r % 4) * 8 + Math.floor(e / 144), w!, bb!, g),
  },
  {
    // E = 20 < 32 lanes: lanes 20-31 of every row hold nothing (empty subgroups merge as zero counts).
    name: 'layer norm, 7x20 (rows shorter than the lanes)',
    inputs: [{ shape: [7, 20], data: rows(7, 20, 11, -3) }, ...affine(20, 13)],
    out: 7 * 20,
    forward: ([x, w, bb]) => layerNorm(x!, w!, bb!),
    reference: ([x, w, bb], g) => refNorm(x!, 7, 20, (_r, e) => e, w!, bb!, g),
  },
  {
    name: 'sum over the last axis of 5x1000 (64 lanes an output)',
    inputs: [{ shape: [5, 1000], data: rows(5, 1000, 23) }],
    out: 5,
    forward: ([x]) => sum(x!, [1]),
    reference: ([x], g) => [Float64Array.from({ length: 5 }, (_, r) => x!.subarray(r * 1000, (r + 1) * 1000).reduce((a, v) => a + v, 0)), Float64Array.from(x!, (_, i) => g[Math.floor(i / 1000)]!)],
  },
  {
    name: 'softmax over rows of 300 (128 lanes a row)',
    inputs: [{ shape: [4, 300], data: rows(4, 300, 29, 0, 8) }],
    out: 4 * 300,
    forward: ([x]) => softmax(x!),
    reference: ([x], g) => refSoftmax(x!, 300, g),
  },
  {
    name: 'softmax over rows of 3000 (256 lanes a row)',
    inputs: [{ shape: [2, 3000], data: rows(2, 3000, 31, 0, 8) }],
    out: 2 * 3000,
    forward: ([x]) => softmax(x!),
    reference: ([x], g) => refSoftmax(x!, 3000, g),
  },
];

// f32 reductions of at most a few thousand terms against float64; the two paths only sum in another order.
const TOL = { atol: 2e-5, rtol: 2e-4 };
const PATHS = { atol: 2e-6, rtol: 2e-5 };

describe('subgroup reductions', () => {
  it('are used wherever the device has the feature (unless LORASMITH_NO_SUBGROUPS=1 left it off)', async () => {
    const gpu = await testGpu();
    const has = gpu.device.features.has('subgroups');
    if (!has) console.log(`subgroups: the adapter (${gpu.adapter.description}) has no subgroups feature; only the workgroup path runs`);
    expect(gpu.backend.subgroups !== null).toBe(has);
    if (!has) return;
    const sg = gpu.backend.subgroups!;
    console.log(`subgroups: sizes ${sg.min}-${sg.max} on ${gpu.adapter.description}`);
    const k = normForwardKernel('group_norm', { rows: 8, E: 1152, eps: 1e-5, group: { G: 4, cg: 8, S: 144 }, w: 'f32', b: 'f32' }, 32, subgroupsFor(gpu.backend, lanesPerRow(1152)));
    expect(k.source()).toMatch(/^\s*enable subgroups;[^]*subgroupAdd/);
  });

  for (const c of CASES) {
    it(`${c.name}: float64 and the workgroup-memory path`, async () => {
      const b = await testBackend();
      const g = randomArray(c.out, 97);
      const expected = c.reference(c.inputs.map((i) => i.data), g);
      const withSubgroups = await run(b, c, g);
      const sg = b.subgroups;
      b.subgroups = null;
      const workgroup = await run(b, c, g).finally(() => (b.subgroups = sg));
      expected.forEach((e, i) => {
        assertClose(withSubgroups[i]!, e, TOL, `${i ? `gradient ${i}` : 'output'} (subgroups ${sg ? `${sg.min}-${sg.max}` : 'off'}) vs float64`);
        assertClose(workgroup[i]!, e, TOL, `${i ? `gradient ${i}` : 'output'} (workgroup path) vs float64`);
        assertClose(withSubgroups[i]!, workgroup[i]!, c.pathTol ?? PATHS, `${i ? `gradient ${i}` : 'output'}: subgroup vs workgroup path`);
      });
    });
  }
});

describe('the subgroup layout probe', () => {
  const words = (sg: number, sid: (lid: number) => number) => Uint32Array.from({ length: 512 }, (_, i) => (i % 2 ? sid(i >> 1) : sg));
  it('accepts aligned runs of local_invocation_index and refuses any other layout', () => {
    expect(layoutOk(words(8, (l) => l % 8), { min: 8, max: 8 })).toBe(true);
    expect(layoutOk(words(32, (l) => l % 32), { min: 8, max: 32 })).toBe(true);
    // Interleaved subgroups (lid 0, 2, 4, … in one), a size outside the adapter's range, a wrong id.
    expect(layoutOk(words(8, (l) => (l >> 1) % 8), { min: 8, max: 8 })).toBe(false);
    expect(layoutOk(words(64, (l) => l % 64), { min: 8, max: 32 })).toBe(false);
    expect(layoutOk(words(4, (l) => (l === 77 ? 0 : l % 4)), { min: 4, max: 4 })).toBe(false);
    expect(layoutOk(words(4, (l) => l % 4 + 1000), { min: 4, max: 4 })).toBe(false);
  });
});
