// The tape: ops record what their backward needs; nothing here runs kernels (see grad.ts for that).
import { Tensor, type GradNode } from './tensor.js';

/**
 * What each op saves for its backward, by op kind. Op modules add their entry by declaration
 * merging (`declare module '../autograd.js' { interface OpSaved { ... } }`), and the rule table in
 * ops/rules.ts must then name a backward rule for every kind, or the build fails.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface OpSaved {}

/** Every differentiable op. */
export type OpKind = keyof OpSaved;

/** A recorded op application. */
export interface TapeNode<K extends OpKind = OpKind> extends GradNode {
  readonly kind: K;
  /** Inputs in the op's order; null where the input is off the gradient path. */
  readonly inputs: readonly (Tensor | null)[];
  /** Number of outputs (multi-output ops such as split). */
  readonly nOutputs: number;
  readonly saved: OpSaved[K];
  /** Tensors retained for backward, released as soon as this node's backward has run. */
  readonly held: Tensor[];
  /** Set once backward has passed this node (or the tape was discarded). */
  consumed?: boolean;
}

/**
 * Backward of one op: given the gradient of each output (null where none flowed) and which inputs
 * need a gradient, return one gradient per input (null where not needed).
 */
export type BackwardRule<K extends OpKind> = (
  saved: OpSaved[K],
  gradOutputs: readonly (Tensor | null)[],
  needs: readonly boolean[],
  /**
   * Per input, the gradient its other uses have delivered so far (null if none): a rule may add
   * it into the gradient it computes in the same dispatch and return that marked `withPrior`.
   */
  prior?: readonly (Tensor | null)[],
) => readonly (Tensor | null)[];

/** Gradients a rule returned with their input's prior gradient already added (see `BackwardRule`'s prior). */
const priorAdded = new WeakSet<Tensor>();

/** Mark a gradient as including the prior one the rule was handed for that input: backward then takes it in place of the sum. */
export function withPrior(g: Tensor): Tensor {
  priorAdded.add(g);
  return g;
}

/**
 * Whether `withPrior` marked `g`, clearing the mark: it holds for one delivery only, since a later
 * rule may hand the same tensor on unchanged (a view's or an add's gradient) as a plain one.
 */
export const takePrior = (g: Tensor): boolean => priorAdded.delete(g);

/** Which output of its node a tensor is. */
export const outputIndex = new WeakMap<Tensor, number>();

let nextId = 1;
const tapes: (TapeNode[] | null)[] = [[]];

/** The tape being recorded, or null inside `noGrad`. */
export function activeTape(): TapeNode[] | null {
  return tapes[tapes.length - 1] ?? null;
}

/** Whether a tensor is on a gradient path (a parameter, or computed from one). */
export function needsGrad(t: Tensor | null | undefined): boolean {
  return !!t && (t.requiresGrad || (t.node !== null && !(t.node as TapeNode).consumed));
}

/**
 * Record an op if any input is on a gradient path. `held` are the tensors `saved` refers to;
 * they are retained until this node's backward has run.
 */
export function record<K extends OpKind>(
  kind: K,
  inputs: readonly (Tensor | null)[],
  outputs: readonly Tensor[],
  saved: OpSaved[K],
  held: readonly Tensor[] = [],
  force = false,
): void {
  const tape = activeTape();
  if (!tape || !(force || inputs.some(needsGrad))) return;
  const node: TapeNode<K> = {
    id: nextId++,
    kind,
    inputs: inputs.map((t) => (needsGrad(t) ? t : null)),
    nOutputs: outputs.length,
    saved,
    held: held.map((t) => t.retain()),
  };
  tape.push(node as unknown as TapeNode);
  outputs.forEach((o, i) => {
    o.node = node;
    outputIndex.set(o, i);
  });
}

/** Run `fn` without recording (inference, backward rules, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  tapes.push(null);
  try {
    return fn();
  } finally {
    tapes.pop();
  }
}

/** Run `fn` recording onto a fresh tape, returned with the result (used by checkpointing). */
export function withTape<T>(fn: () => T): { result: T; tape: TapeNode[] } {
  const tape: TapeNode[] = [];
  tapes.push(tape);
  try {
    return { result: fn(), tape };
  } finally {
    tapes.pop();
  }
}

/** Take the recorded nodes off the active tape (backward consumes them). */
export function takeTape(): TapeNode[] {
  const tape = activeTape();
  if (!tape) return [];
  return tape.splice(0, tape.length);
}

/** Drop everything recorded without running backward (an evaluation pass that recorded by mistake, an aborted step). */
export function discardTape(): void {
  for (const n of takeTape()) {
    for (const t of n.held) t.release();
    n.held.length = 0;
    n.consumed = true;
  }
}

/**
 * What a checkpointed segment keeps for its recompute through `replayed`: the first run appends,
 * the recompute reads them back in the same order.
 */
export interface Replay {
  kept: Tensor[];
  next: number;
  recompute: boolean;
}
const replays: Replay[] = [];

/**
 * `make()`, except in a checkpointed segment's recompute, which gets back (as a new handle) what
 * `make()` gave the segment's first run: for small values that are cheap to keep and cost a
 * dispatch to recompute (a LoRA's down projection, [rows, rank]). `make` must compute the same
 * value both times, as everything in a checkpointed segment does; outside checkpointing it just runs.
 */
export function replayed(make: () => Tensor): Tensor {
  return replayedAll(1, () => [make()])[0]!;
}

/** `replayed` for `n` values made together (`make` returns n tensors: independent projections run in paired dispatches). */
export function replayedAll(n: number, make: () => Tensor[]): Tensor[] {
  const r = replays[replays.length - 1];
  if (!r) return make();
  if (!r.recompute) {
    const ts = make();
    for (const t of ts) r.kept.push(t.retain());
    return ts;
  }
  return Array.from({ length: n }, () => {
    const t = r.kept[r.next++];
    if (!t) throw new Error('replayed: the recompute asked for more values than the first run kept');
    return new Tensor(t.backend, t.storage, t.shape, t.dtype, t.offset);
  });
}

/** Run `fn` with `r` as the innermost replay (checkpointing's first run and recompute). */
export function withReplay<T>(r: Replay, fn: () => T): T {
  replays.push(r);
  try {
    return fn();
  } finally {
    replays.pop();
  }
}
