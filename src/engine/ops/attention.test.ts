// Tiled attention (no score matrix) forward and backward against a reference and the naive kernel, pipeline reuse, and memory at 4096 tokens on the meta device.
import { describe, expect, it } from 'vitest';
import { MetaBackend, type Storage } from '../backend.js';
import { backward } from '../grad.js';
import { empty, scope } from '../tensor.js';
import { checkOp } from '../testing/opcheck.js';
import { testBackend } from '../testing/gpu.js';
import { pipelinesCompiledBy } from '../testing/pipelines.js';
import { attnBackwardSource, attnForwardSource } from '../kernels/attention.js';
import { refAttention } from '../testing/ref.js';
import { attention, attentionNaive } from './attention.js';

const TOL = { atol: 2e-5, rtol: 1e-4 };

const cases: [string, number, number, number, number, number, boolean][] = [
  // name, B, Nq, Nk, H, D, causal
  ['self, 2 heads, D=5', 2, 9, 9, 2, 5, false],
  ['cross Nq=13 Nk=7, 3 heads', 1, 13, 7, 3, 4, false],
  ['causal, 2 heads', 1, 11, 11, 2, 6, true],
  ['ragged 45 tokens (32-key blocks), 2 heads, D=40', 1, 45, 45, 2, 40, false],
  ['causal across two 64-row blocks, 70 tokens, D=40', 1, 70, 70, 1, 40, true],
  ['cross to 77 text tokens, 2 heads', 2, 10, 77, 2, 8, false],
  ['CLIP-like causal, D=64 (largest unrolled head), 2 heads', 1, 9, 9, 2, 64, true],
  ['D=80 (rows split over 2 threads, 16-key blocks), 2 query workgroups, Nq=37 Nk=21, 2 heads', 1, 37, 21, 2, 80, false],
  ['D=80 causal across two 32-row workgroups, 40 tokens', 1, 40, 40, 1, 80, true],
  ['D=160 (8-row blocks), ragged Nq=11 Nk=19', 1, 11, 19, 1, 160, false],
  ['D=160 (rows split over 4 threads) causal across two 16-row workgroups, 2 batches, 21 tokens', 2, 21, 21, 1, 160, true],
  ['D=100 (rows split over 2 threads, slices padded past D), Nq=5 Nk=35', 1, 5, 35, 1, 100, false],
  ['D=510 (VAE-size heads: rows split over 8 threads, 2-row blocks), Nq=Nk=6', 1, 6, 6, 1, 510, false],
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

  it('explicit scale', async () => {
    const [Nq, Nk, H, D, sc] = [6, 9, 2, 3, 0.9];
    // attention with scale sc equals the default-scaled reference on q' = q·sc·√D; dq = dq'·sc·√D.
    const r = sc * Math.sqrt(D);
    const qs = (q: Float64Array) => q.map((x) => x * r);
    await checkOp(await testBackend(), {
      inputs: [{ shape: [1, Nq, H * D], grad: true }, { shape: [1, Nk, H * D], grad: true }, { shape: [1, Nk, H * D], grad: true }],
      forward: ([q, k, v]) => attention(q!, k!, v!, { heads: H, scale: sc }),
      reference: ([q, k, v]) => refAttention(qs(q!), k!, v!, 1, Nq, Nk, H, D, false).o,
      referenceGrad: ([q, k, v], g) => {
        const ref = refAttention(qs(q!), k!, v!, 1, Nq, Nk, H, D, false, g);
        return [ref.dq.map((x) => x * r), ref.dk, ref.dv];
      },
      tol: TOL,
    });
  });

  it('naive baseline (explicit scores) agrees, cross', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [2, 13, 10] }, { shape: [2, 7, 10] }, { shape: [2, 7, 10] }],
      forward: ([q, k, v]) => attentionNaive(q!, k!, v!, { heads: 2 }),
      reference: ([q, k, v]) => refAttention(q!, k!, v!, 2, 13, 7, 2, 5, false).o,
      tol: TOL,
    });
  });

  it('naive baseline (explicit scores) agrees, causal', async () => {
    await checkOp(await testBackend(), {
      inputs: [{ shape: [1, 10, 8] }, { shape: [1, 10, 8] }, { shape: [1, 10, 8] }],
      forward: ([q, k, v]) => attentionNaive(q!, k!, v!, { heads: 2, causal: true }),
      reference: ([q, k, v]) => refAttention(q!, k!, v!, 1, 10, 10, 2, 4, true).o,
      tol: TOL,
    });
  });

  it('another batch, head count or sequence length of the same head dim reuses the pipelines', async () => {
    const b = await testBackend();
    const run = (B: number, Nq: number, Nk: number, H: number, D: number) =>
      checkOp(b, {
        inputs: [{ shape: [B, Nq, H * D], grad: true }, { shape: [B, Nk, H * D], grad: true }, { shape: [B, Nk, H * D], grad: true }],
        forward: ([q, k, v]) => attention(q!, k!, v!, { heads: H }),
        reference: ([q, k, v]) => refAttention(q!, k!, v!, B, Nq, Nk, H, D, false).o,
        referenceGrad: ([q, k, v], g) => {
          const r = refAttention(q!, k!, v!, B, Nq, Nk, H, D, false, g);
          return [r.dq, r.dk, r.dv];
        },
        tol: TOL,
        fd: { samples: 1 },
      });
    await run(1, 5, 7, 2, 8);
    expect(await pipelinesCompiledBy(b, () => run(2, 70, 3, 3, 8))).toBe(0);
  });

  it('kernels hold no per-thread array at any head dim (a private score array stalls lavapipe\'s compiler for minutes)', () => {
    for (const D of [5, 40, 64, 80, 100, 160, 510, 512]) {
      const p = { D, causal: D === 64, dtypes: ['f32', 'f32', 'f32'] as const } as const;
      for (const src of [attnForwardSource, attnBackwardSource]) expect(src({ ...p, dtypes: [...p.dtypes] })()).not.toMatch(/var\s+\w+\s*:\s*array</);
    }
  });

  it('4096 tokens x 8 heads x 40: forward and backward never allocate a 4096x4096 matrix (meta device)', () => {
    const meta = new LargestAllocMeta();
    const [B, N, C] = [1, 4096, 320];
    const q = empty(meta, [B, N, C]), k = empty(meta, [B, N, C]), v = empty(meta, [B, N, C]);
    for (const t of [q, k, v]) t.requiresGrad = true;
    meta.resetPeak();
    meta.largest = 0;
    const out = scope(() => attention(q, k, v, { heads: 8 }));
    const seed = empty(meta, out.shape);
    backward(out, seed);
    const peak = meta.pool().peakLiveBytes;
    const score = 4096 * 4096 * 4;
    // Tensors any attention holds at the end of backward: q, k, v, the output, its gradient, dQ, dK, dV.
    const needed = [q, k, v, out, seed, q.grad!, k.grad!, v.grad!].reduce((a, t) => a + t.storage.bytes, 0);
    const workspace = peak - needed;
    // Beyond those, only the per-row log-sum-exp L ([B, H, N], 128 KiB; Δ is summed inside the backward kernel).
    expect(workspace).toBeLessThanOrEqual(2 * B * 8 * N * 4);
    // No allocation is larger than one [N, C] activation (5 MiB); one head's score matrix would be 64 MiB.
    expect(meta.largest).toBe(N * C * 4);
    expect(meta.largest).toBeLessThan(score);
    expect(peak).toBeLessThan(score);
    const mib = (x: number) => `${(x / 2 ** 20).toFixed(2)} MiB`;
    console.log(
      `attention 1x8x4096x40 fwd+bwd on the meta device: peak live ${peak} B (${mib(peak)}), of which ${mib(needed)} are q, k, v, out, dOut, dq, dk, dv ` +
        `and ${workspace} B (${mib(workspace)}) workspace; largest allocation ${mib(meta.largest)}; one score matrix would be ${mib(score)} per head; ` +
        `${(meta.stats.flops / 1e9).toFixed(1)} GFLOP in ${meta.stats.dispatches} dispatches`,
    );
    for (const t of [q, k, v, out, seed]) t.dispose();
  });
});

/** A meta device that also remembers its largest single allocation. */
class LargestAllocMeta extends MetaBackend {
  largest = 0;
  override alloc(bytes: number): Storage {
    this.largest = Math.max(this.largest, bytes);
    return super.alloc(bytes);
  }
}
