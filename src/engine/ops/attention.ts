// Multi-head scaled-dot-product attention without a sequence-by-sequence matrix, forward and backward.
import { noGrad, record, type BackwardRule } from '../autograd.js';
import { attnBackwardKernel, attnForwardSource, attnKernel, attnNaiveKernels, BWD_BINDINGS, MAX_HEAD_DIM, type AttnParams } from '../kernels/attention.js';
import { softmaxKernel } from '../kernels/softmax.js';
import { empty, type Tensor } from '../tensor.js';
import { check, emptyLike, launch } from './util.js';

declare module '../autograd.js' {
  interface OpSaved {
    attention: { q: Tensor; k: Tensor; v: Tensor; o: Tensor; lse: Tensor; p: AttnParams };
  }
}

export interface AttentionOptions {
  heads: number;
  /** Mask keys after the query position (CLIP's text encoder). */
  causal?: boolean;
  /** Score scale; 1/sqrt(head dim) by default. */
  scale?: number;
}

function params(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): AttnParams {
  check(q.rank === 3 && k.rank === 3 && v.rank === 3, () => `attention: expected [B, N, H*D] tensors, got [${q.shape}], [${k.shape}], [${v.shape}]`);
  const [B, Nq, HD] = q.shape as [number, number, number];
  const [B2, Nk, HD2] = k.shape as [number, number, number];
  check(B === B2 && HD === HD2 && v.shape[0] === B && v.shape[1] === Nk && v.shape[2] === HD, () => `attention: q [${q.shape}], k [${k.shape}], v [${v.shape}] do not match`);
  check(HD % o.heads === 0, () => `attention: width ${HD} is not divisible by ${o.heads} heads`);
  const D = HD / o.heads;
  check(D <= MAX_HEAD_DIM, () => `attention: head dim ${D} above ${MAX_HEAD_DIM} is not supported`);
  check(!o.causal || Nq === Nk, () => 'attention: a causal mask needs as many queries as keys');
  return { B, H: o.heads, Nq, Nk, D, scale: o.scale ?? 1 / Math.sqrt(D), causal: !!o.causal, dtypes: [q.dtype, k.dtype, v.dtype] };
}

function fwdFlops(p: AttnParams): number {
  const pairs = p.causal ? (p.Nq * (p.Nq + 1)) / 2 : p.Nq * p.Nk;
  return p.B * p.H * pairs * (4 * p.D + 4);
}

/** softmax(q kᵀ · scale) v per head; q [B, Nq, H·D], k and v [B, Nk, H·D] → [B, Nq, H·D]. */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Tensor {
  const p = params(q, k, v, opts);
  const o = emptyLike(q, q.shape);
  const lse = empty(q.backend, [p.B, p.H, p.Nq]);
  const io = 4 * p.B * p.H * (p.D * (2 * p.Nq + 2 * p.Nk) + p.Nq);
  launch(attnKernel('attention', attnForwardSource, p, p.Nq, fwdFlops(p), io), [q, k, v], [o, lse]);
  record('attention', [q, k, v], [o], { q, k, v, o, lse, p }, [q, k, v, o, lse]);
  lse.dispose();
  return o;
}

/**
 * The same attention the textbook way, with an explicit [B, H, Nq, Nk] score matrix, a row softmax
 * and P V (no autograd): the benchmark's baseline. Its memory grows with Nq·Nk, which is why
 * `attention` exists.
 */
export function attentionNaive(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Tensor {
  const p = params(q, k, v, opts);
  const kern = attnNaiveKernels(p);
  const s = empty(q.backend, [p.B, p.H, p.Nq, p.Nk]);
  launch(kern.scores, [q, k], [s]);
  const pr = empty(q.backend, s.shape);
  launch(softmaxKernel({ outer: p.B * p.H * p.Nq, n: p.Nk, inner: 1, dtype: 'f32' }), [s], [pr]);
  s.dispose();
  const o = emptyLike(q, q.shape);
  launch(kern.values, [pr, v], [o]);
  pr.dispose();
  return o;
}

// Saved: q, k, v, the output and the per-row log-sum-exp [B, H, Nq]. Backward recomputes the
// probabilities block by block in one dispatch: dQ by query rows and dK, dV by key rows, each
// summing Δ = rowsum(dO ∘ O) for the rows it reads (no separate pass, no Δ buffer). On a device
// that binds fewer storage buffers than that dispatch (WebGPU's default 8 < 9), the two parts run
// as two dispatches of the same code, binding only what each writes: the same gradients.
const attentionBackward: BackwardRule<'attention'> = ({ q, k, v, o, lse, p }, [g], needs) =>
  noGrad(() => {
    const withDq = needs[0]!;
    const withDkv = needs[1]! || needs[2]!;
    if (!withDq && !withDkv) return [null, null, null];
    const rowBytes = 4 * p.B * p.H * p.D;
    const dqFlops = withDq ? 1.5 * fwdFlops(p) : 0;
    const dkvFlops = withDkv ? 2 * fwdFlops(p) : 0;
    const deltaFlops = 2 * p.B * p.H * p.Nq * p.D;
    const dqBytes = withDq ? rowBytes * (4 * p.Nq + 2 * p.Nk) : 0;
    const dkvBytes = withDkv ? rowBytes * (3 * p.Nq + 4 * p.Nk) : 0;
    const ins = [q, k, v, g!, lse, o];
    if (q.backend.maxStorageBuffers < BWD_BINDINGS) {
      const dq = withDq ? emptyLike(q, q.shape) : null;
      const [dk, dv] = withDkv ? [emptyLike(k, k.shape), emptyLike(v, v.shape)] : [null, null];
      if (dq) launch(attnBackwardKernel(p, true, false, dqFlops + deltaFlops, dqBytes, 'dq'), ins, [dq]);
      if (dk && dv) launch(attnBackwardKernel(p, false, true, dkvFlops + deltaFlops, dkvBytes, 'dkv'), ins, [dk, dv]);
      if (!needs[1]) dk?.dispose();
      if (!needs[2]) dv?.dispose();
      return [dq, needs[1] ? dk : null, needs[2] ? dv : null];
    }
    // An output the kernel does not write is still bound: a one-element placeholder.
    const dq = withDq ? emptyLike(q, q.shape) : empty(q.backend, [1]);
    const [dk, dv] = withDkv ? [emptyLike(k, k.shape), emptyLike(v, v.shape)] : [empty(q.backend, [1]), empty(q.backend, [1])];
    launch(attnBackwardKernel(p, withDq, withDkv, dqFlops + dkvFlops + deltaFlops, dqBytes + dkvBytes), ins, [dq, dk, dv]);
    const kept = [withDq ? dq : null, needs[1] ? dk : null, needs[2] ? dv : null];
    for (const t of [dq, dk, dv]) if (!kept.includes(t)) t.dispose();
    return kept;
  });

export const attentionRules = { attention: attentionBackward };
