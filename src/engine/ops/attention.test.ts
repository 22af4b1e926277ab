import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../backend.js';
import { backward } from '../grad.js';
import { empty, scope } from '../tensor.js';
import { checkOp } from '../testing/opcheck.js';
import { testBackend } from '../testing/gpu.js';
import { refAttention } from '../testing/ref.js';
import { attention, attentionNaive } from './attention.js';

const TOL = { atol: 2e-5, rtol: 1e-4 };

const cases: [string, number, number, number, number, number, boolean][] = [
  // name, B, Nq, Nk, H, D, causal
  ['self, 2 heads, D=5', 2, 9, 9, 2, 5, false],
  ['cross Nq=13 Nk=7, 3 heads', 1, 13, 7, 3, 4, false],
  ['causal, 2 heads', 1, 11, 11, 2, 6, true],
  ['ragged 70 tokens, D=40', 1, 70, 70, 1, 40, false],
];

describe('attention (tiled, no score matrix)', () => {
  for (const [name, B, Nq, Nk, H, D, causal] of cases) {
    it(name, async () => {
      await checkOp(await testBackend(), {
        inputs: [
          { shape: [B, Nq, H * D], grad: true },
          { shape: [B, Nk, H * D], grad: true },
          { shape: [B, Nk, H * D], grad: true },
        ],
        forward: ([q, k, v]) => attention(q!, k!, v!, { heads: H, causal }),
        reference: ([q, k, v]) => refAttention(q!, k!, v!, B, Nq, Nk, H, D, causal).o,
        referenceGrad: ([q, k, v], g) => {
          const r = refAttention(q!, k!, v!, B, Nq, Nk, H, D, causal, g);
          return [r.dq, r.dk, r.dv];
        },
        tol: TOL,
      });
    });
  }

  it('naive baseline agrees', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [1, 10, 8] }, { shape: [1, 10, 8] }, { shape: [1, 10, 8] }],
      forward: ([q, k, v]) => attentionNaive(q!, k!, v!, { heads: 2, causal: true }),
      reference: ([q, k, v]) => refAttention(q!, k!, v!, 1, 10, 10, 2, 4, true).o,
      tol: TOL,
    });
  });

  it('4096 tokens x 8 heads x 40: forward and backward never allocate a 4096x4096 matrix (meta device)', () => {
    const meta = new MetaBackend();
    const [B, N, C] = [1, 4096, 320];
    const q = empty(meta, [B, N, C]), k = empty(meta, [B, N, C]), v = empty(meta, [B, N, C]);
    for (const t of [q, k, v]) t.requiresGrad = true;
    meta.resetPeak();
    const base = meta.pool().liveBytes;
    const out = scope(() => attention(q, k, v, { heads: 8 }));
    const seed = empty(meta, out.shape);
    backward(out, seed);
    const peak = meta.pool().peakLiveBytes - base;
    const score = 4096 * 4096 * 4;
    // What backward must hold: output, its gradient, dQ, dK, dV (each N x C) plus per-row statistics.
    const activations = 5 * N * C * 4;
    expect(peak).toBeLessThan(activations + 2 ** 20);
    // One head's score matrix alone would be 64 MiB; all eight, 512 MiB.
    expect(peak).toBeLessThan(score / 2);
    console.log(`attention 1x8x4096x40 fwd+bwd peak extra bytes on the meta device: ${peak} (${(peak / 2 ** 20).toFixed(2)} MiB); one score matrix would be ${score / 2 ** 20} MiB per head`);
    for (const t of [q, k, v, out, seed]) t.dispose();
  });
});
