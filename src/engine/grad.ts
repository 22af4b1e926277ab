// Reverse-mode differentiation over the tape, and gradient checkpointing (recompute a segment in backward).
import { takePrior, noGrad, outputIndex, record, takeTape, withReplay, withTape, type TapeNode } from './autograd.js';
import { addInto, map } from './ops/elementwise.js';
import { backwardRules } from './ops/rules.js';
import { Tensor, keep, scope } from './tensor.js';

declare module './autograd.js' {
  interface OpSaved {
    checkpoint: { fn: (...xs: Tensor[]) => Tensor; inputs: Tensor[]; kept: Tensor[] };
  }
}

/**
 * Backpropagate from `root` (seeded with `seed`, or ones for a scalar loss) through the active tape.
 * Leaves that require grad accumulate into `.grad` (added to what is there: that is how micro-batch
 * gradients sum). Every node's saved tensors are released as soon as its backward has run, and the
 * tape is empty afterwards.
 */
export function backward(root: Tensor, seed?: Tensor): void {
  backwardOn(takeTape(), root, seed);
}

function backwardOn(tape: TapeNode[], root: Tensor, seed?: Tensor): void {
  const grads = new Map<TapeNode, (Tensor | null)[]>();
  noGrad(() => {
    const g0 = seed ? seed.retain() : keep(map('ones', [root], '1.0'));
    if (!deliver(root, g0, grads)) g0.release();
    for (let i = tape.length - 1; i >= 0; i--) {
      const node = tape[i]!;
      const gOut = grads.get(node);
      grads.delete(node);
      if (gOut) runRule(node, gOut, grads);
      for (const t of node.held) t.release();
      node.held.length = 0;
      node.consumed = true;
    }
  });
  for (const gs of grads.values()) for (const g of gs) g?.release();
}

function runRule(node: TapeNode, gOut: (Tensor | null)[], grads: Map<TapeNode, (Tensor | null)[]>): void {
  const needs = node.inputs.map((t) => t !== null);
  const prior = node.inputs.map((t) => t && priorOf(t, grads));
  const rule = backwardRules[node.kind] as (s: unknown, g: readonly (Tensor | null)[], n: readonly boolean[], p: readonly (Tensor | null)[]) => readonly (Tensor | null)[];
  const gIn = scope(() => rule(node.saved, gOut, needs, prior).map((g) => g && keep(gOut.includes(g) ? g.retain() : g)));
  for (const g of gOut) g?.release();
  node.inputs.forEach((t, k) => {
    const g = gIn[k];
    if (!g) return;
    if (!t || !deliver(t, g, grads)) g.release();
  });
}

/** The gradient delivered so far to `t`, the output of a node not yet passed (null for a leaf: its gradient may be an arena's slot, added into in place). */
function priorOf(t: Tensor, grads: Map<TapeNode, (Tensor | null)[]>): Tensor | null {
  const node = t.node as TapeNode | null;
  if (!node) return segmentLeaves.has(t) ? t.grad : null;
  if (node.consumed) return null;
  return grads.get(node)?.[outputIndex.get(t) ?? 0] ?? null;
}

/**
 * The leaves that stand for a checkpointed segment's inputs in its recompute: their gradients are
 * handed on whole to the enclosing tape (never an arena's slot), so they are summed out of place
 * like a node's, and may be a shared gradient rather than a copy.
 */
const segmentLeaves = new WeakSet<Tensor>();

/** The sum of a gradient slot's `prev` (or none) and `g`, out of place: rules may hand the same gradient to several inputs, so none is mutated. */
function summed(prev: Tensor | null, g: Tensor, folded: boolean): Tensor {
  if (!prev) return g;
  if (folded) {
    // The rule added prev into g already (it was handed prev as this input's prior).
    prev.release();
    return g;
  }
  const s = keep(map('add', [prev, g], 'a + b'));
  prev.release();
  g.release();
  return s;
}

/** Route a gradient to the node that made `t` or into the leaf's `.grad`; false if it went nowhere. */
function deliver(t: Tensor, g: Tensor, grads: Map<TapeNode, (Tensor | null)[]>): boolean {
  const node = t.node as TapeNode | null;
  const folded = takePrior(g);
  if (node && !node.consumed) {
    let slot = grads.get(node);
    if (!slot) grads.set(node, (slot = new Array<Tensor | null>(node.nOutputs).fill(null)));
    const i = outputIndex.get(t) ?? 0;
    slot[i] = summed(slot[i] ?? null, g, folded);
    return true;
  }
  if (segmentLeaves.has(t) && g.dtype === 'f32' && sameShape(g.shape, t.shape)) {
    t.grad = summed(t.grad, g, folded);
    return true;
  }
  if (t.requiresGrad) {
    if (t.grad) {
      addInto(t.grad, g);
      g.release();
    } else if (g.unshared && g.dtype === 'f32' && sameShape(g.shape, t.shape)) {
      // Nothing else sees this gradient's storage: the leaf adopts it without a copy.
      t.grad = g;
    } else {
      // A copy: the leaf's gradient outlives this pass and must not share storage with one that flows on.
      t.grad = keep(map('copy', [g], 'a', 0, t.shape));
      g.release();
    }
    return true;
  }
  return false;
}

/**
 * Run `fn(...inputs)` without keeping its activations; backward runs it again on a fresh tape and
 * differentiates that. Parameters used inside `fn` receive the same gradients as without
 * checkpointing. `fn` must be deterministic (seeded dropout replays the same mask). What `fn`
 * passes through `replayed` is kept from the first run for the recompute.
 */
export function checkpoint(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[]): Tensor {
  const kept: Tensor[] = [];
  const out = withReplay({ kept, next: 0, recompute: false }, () => noGrad(() => scope(() => fn(...inputs))));
  // Recorded even when no input needs a gradient: parameters inside `fn` may. The node holds the kept values.
  record('checkpoint', inputs, [out], { fn, inputs, kept }, [...inputs, ...kept], true);
  for (const t of kept) t.release();
  return out;
}

export function checkpointBackward(saved: { fn: (...xs: Tensor[]) => Tensor; inputs: Tensor[]; kept: Tensor[] }, gOut: readonly (Tensor | null)[], needs: readonly boolean[]): (Tensor | null)[] {
  const leaves = saved.inputs.map((x, i) => new Tensor(x.backend, x.storage, x.shape, x.dtype, x.offset, needs[i]));
  for (const l of leaves) if (l.requiresGrad) segmentLeaves.add(l);
  const replay = { kept: saved.kept, next: 0, recompute: true };
  const { result, tape } = withReplay(replay, () => withTape(() => scope(() => saved.fn(...leaves))));
  if (replay.next !== saved.kept.length) throw new Error(`checkpoint: the recompute read ${replay.next} of the ${saved.kept.length} values its first run kept`);
  backwardOn(tape, result, gOut[0]!);
  result.dispose();
  const out = leaves.map((l) => {
    const g = l.grad;
    l.grad = null;
    l.dispose();
    return g;
  });
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
