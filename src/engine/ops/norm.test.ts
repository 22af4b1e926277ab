import { describe, it } from 'vitest';
import { roundF16 } from '../dtype.js';
import { checkOp } from '../testing/opcheck.js';
import { testBackend } from '../testing/gpu.js';
import { assertClose, randomArray } from '../testing/allclose.js';
import { geglu, groupNorm, layerNorm, timestepEmbedding } from './norm.js';

/** Normalize rows of a [R, E] view with per-element channels; returns y and the VJP. */
function refNorm(x: Float64Array, R: number, E: number, chan: (r: number, e: number) => number, w: Float64Array | null, b: Float64Array | null, eps: number, g?: Float64Array) {
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  const C = w?.length ?? b?.length ?? 0;
  const dw = new Float64Array(C), db = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    let m = 0;
    for (let e = 0; e < E; e++) m += x[r * E + e]!;
    m /= E;
    let v = 0;
    for (let e = 0; e < E; e++) v += (x[r * E + e]! - m) ** 2;
    const rs = 1 / Math.sqrt(v / E + eps);
    let s1 = 0, s2 = 0;
    for (let e = 0; e < E; e++) {
      const c = chan(r, e), xh = (x[r * E + e]! - m) * rs;
      y[r * E + e] = xh * (w ? w[c]! : 1) + (b ? b[c]! : 0);
      if (g) {
        const dh = g[r * E + e]! * (w ? w[c]! : 1);
        s1 += dh; s2 += dh * xh;
        dw[c] = dw[c]! + g[r * E + e]! * xh;
        db[c] = db[c]! + g[r * E + e]!;
      }
    }
    if (g) for (let e = 0; e < E; e++) {
      const c = chan(r, e), xh = (x[r * E + e]! - m) * rs, dh = g[r * E + e]! * (w ? w[c]! : 1);
      dx[r * E + e] = rs * (dh - s1 / E - xh * s2 / E);
    }
  }
  return { y, dx, dw, db };
}

const FD = { eps: 1e-3, tol: { atol: 2e-3, rtol: 3e-2 } };

describe('groupNorm', () => {
  for (const [N, C, G, S] of [[2, 6, 3, 35], [3, 4, 2, 1]] as const) {
    it(`N=${N} C=${C} groups=${G} spatial=${S}`, async () => {
      const shape = S === 1 ? [N, C] : [N, C, 5, 7];
      const E = (C / G) * S;
      const chan = (r: number, e: number) => (r % G) * (C / G) + Math.floor(e / S);
      await checkOp(await testBackend(), {
        inputs: [{ shape, grad: true }, { shape: [C], grad: true }, { shape: [C], grad: true }],
        forward: ([x, w, b]) => groupNorm(x!, G, w!, b!, 1e-5),
        reference: ([x, w, b]) => refNorm(x!, N * G, E, chan, w!, b!, 1e-5).y,
        referenceGrad: ([x, w, b], g) => { const r = refNorm(x!, N * G, E, chan, w!, b!, 1e-5, g); return [r.dx, r.dw, r.db]; },
        tol: { atol: 1e-5, rtol: 1e-4 },
        fd: FD,
      });
    });
  }

  it('large mean does not cancel, f16 weight', async () => {
    const data = Array.from(randomArray(2 * 4 * 16, 9), (v) => Math.fround(1000 + v));
    const w = [0.5, -1, 2, 1.25];
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 4, 4, 4], data }, { shape: [4], data: w, dtype: 'f16' }],
      forward: ([x, ww]) => groupNorm(x!, 2, ww!, undefined, 1e-6),
      reference: ([x]) => refNorm(x!, 4, 32, (r, e) => (r % 2) * 2 + Math.floor(e / 16), Float64Array.from(roundF16(w)), null, 1e-6).y,
      // inputs are exact f32 values near 1000 and unit spread: a one-pass E[x²]−E[x]² would lose about 3 digits
      tol: { atol: 2e-3, rtol: 2e-3 },
    });
  });
});

describe('layerNorm', () => {
  it('[2, 3, 10] with weight and bias', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 3, 10], grad: true }, { shape: [10], grad: true }, { shape: [10], grad: true }],
      forward: ([x, w, b]) => layerNorm(x!, w!, b!),
      reference: ([x, w, b]) => refNorm(x!, 6, 10, (_r, e) => e, w!, b!, 1e-5).y,
      referenceGrad: ([x, w, b], g) => { const r = refNorm(x!, 6, 10, (_r, e) => e, w!, b!, 1e-5, g); return [r.dx, r.dw, r.db]; },
      tol: { atol: 1e-5, rtol: 1e-4 },
      fd: FD,
    });
  });
});

describe('geglu', () => {
  it('value * gelu(gate)', async () => {
    const erf = (x: number) => { const t = 1 / (1 + 0.3275911 * Math.abs(x)); const y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x); return x >= 0 ? y : -y; };
    const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
    const dgelu = (x: number) => 0.5 * (1 + erf(x / Math.SQRT2)) + x * Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI);
    const [R, F] = [6, 5];
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 3, 2 * F], grad: true }],
      forward: ([x]) => geglu(x!),
      reference: ([x]) => Float64Array.from({ length: R * F }, (_, i) => { const r = Math.floor(i / F), j = i % F; return x![r * 2 * F + j]! * gelu(x![r * 2 * F + F + j]!); }),
      referenceGrad: ([x], g) => {
        const d = new Float64Array(x!.length);
        for (let i = 0; i < R * F; i++) {
          const r = Math.floor(i / F), j = i % F, v = x![r * 2 * F + j]!, gt = x![r * 2 * F + F + j]!;
          d[r * 2 * F + j] = g[i]! * gelu(gt);
          d[r * 2 * F + F + j] = g[i]! * v * dgelu(gt);
        }
        return [d];
      },
      // the reference erf (A&S 7.1.26) is good to 1.5e-7
      tol: { atol: 2e-6, rtol: 1e-5 },
    });
  });
});

describe('timestepEmbedding', () => {
  for (const dim of [320, 8]) {
    it(`dim ${dim}, cos first`, async () => {
      const b = await testBackend();
      const ts = [0, 1, 500, 999];
      const y = timestepEmbedding(b, ts, dim);
      const got = await y.read();
      y.dispose();
      const half = dim / 2;
      const want = Float64Array.from({ length: ts.length * dim }, (_, i) => {
        const t = ts[Math.floor(i / dim)]!, j = i % dim, k = j % half;
        const arg = t * Math.exp((-Math.log(10000) * k) / half);
        return j < half ? Math.cos(arg) : Math.sin(arg);
      });
      // f32 sin/cos of arguments up to 999 rad: absolute error ~1e-4 from argument rounding
      assertClose(got, want, { atol: 2e-4, rtol: 0 }, 'timestep embedding');
    });
  }
});
