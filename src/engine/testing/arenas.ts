// Test fixtures for optimizer tests: small arenas of random parameters, gradients written straight into their views.
import type { Backend } from '../backend.js';
import { ParamArena } from '../optim/arena.js';
import type { Optimizer } from '../optim/optimizer.js';
import { zeros, type Tensor } from '../tensor.js';
import { randomArray } from './allclose.js';

/** An arena of 1-D parameters `p0, p1, …` of the given sizes, random in [-1, 1) from `seed` (zeros when `seed` is null). */
export function randomArena(b: Backend, sizes: readonly number[], seed: number | null): ParamArena {
  return new ParamArena(
    b,
    sizes.map((n, i) => ({ name: `p${i}`, shape: [n], init: seed === null ? new Float32Array(n) : Float32Array.from(randomArray(n, seed + i)) })),
  );
}

/** The arena's parameters as float64 copies of what it was created with (f32-rounded), for a reference to evolve. */
export async function readParams(arena: ParamArena): Promise<Float64Array[]> {
  return Promise.all(arena.names.map(async (n) => Float64Array.from(await arena.read(n))));
}

/** Set every parameter's gradient to `gs[i]` (rounded to f32), overwriting what was there. */
export function writeGrads(arena: ParamArena, gs: readonly ArrayLike<number>[]): void {
  arena.names.forEach((name, i) => arena.get(name).grad!.write(Float32Array.from(gs[i]!)));
}

/** One parameter's slice of a flat optimizer state buffer. */
export async function readStateOf(arena: ParamArena, key: string, name: string): Promise<Float32Array> {
  const off = arena.offsets.get(name)!;
  const all = await arena.stateBuffer(key).read();
  return all.slice(off, off + arena.get(name).size);
}

/** Float64 L2 norm over several gradient lists, each element rounded to f32 first (as the GPU holds them). */
export function l2(...lists: readonly (readonly ArrayLike<number>[])[]): number {
  let s = 0;
  for (const gs of lists) for (const g of gs) for (let i = 0; i < g.length; i++) s += Math.fround(g[i]!) ** 2;
  return Math.sqrt(s);
}

/** The clip factor every optimizer applies: min(1, max / (norm + 1e-6)), 1 when off. */
export function clipFactor(norm: number, maxGradNorm: number | undefined): number {
  return maxGradNorm && maxGradNorm > 0 ? Math.min(1, maxGradNorm / (norm + 1e-6)) : 1;
}

/** What `threeSteps` leaves: the arenas after the updates, the float64 references beside them, each step's clip factor and flag value. */
export interface ThreeSteps<R> {
  arenas: ParamArena[];
  refs: R[][];
  clips: number[];
  flags: number[];
}

/**
 * Three updates of `opt` over two arenas of the sizes given (seeds 10 and 20) at their own LRs, each step's
 * gradients random in [-2, 2) from fixed seeds; the float64 references (`fresh` of each parameter's
 * initial values) are stepped by `ref` with the clip factor the GPU applies to the global norm.
 */
export async function threeSteps<R>(
  b: Backend,
  opt: Optimizer,
  sizes: readonly [readonly number[], readonly number[]],
  lrs: readonly [number, number],
  maxGradNorm: number | undefined,
  fresh: (p: Float64Array) => R,
  ref: (r: R, g: ArrayLike<number>, clip: number, lr: number) => void,
): Promise<ThreeSteps<R>> {
  const arenas = sizes.map((sz, ai) => randomArena(b, sz, 10 * (ai + 1)));
  const refs = await Promise.all(arenas.map(async (a) => (await readParams(a)).map(fresh)));
  const out: ThreeSteps<R> = { arenas, refs, clips: [], flags: [] };
  for (let step = 1; step <= 3; step++) {
    const gs = sizes.map((sz, ai) => sz.map((n, i) => randomArray(n, 1000 * step + 100 * ai + i, -2, 2)));
    arenas.forEach((a, i) => writeGrads(a, gs[i]!));
    const flag = opt.update(
      arenas.map((arena, i) => ({ arena, lr: lrs[i]! })),
      { step, maxGradNorm },
    );
    const clip = clipFactor(l2(...gs), maxGradNorm);
    out.clips.push(clip);
    refs.forEach((rs, ai) => rs.forEach((r, i) => ref(r, gs[ai]![i]!, clip, lrs[ai]!)));
    out.flags.push((await flag.read())[0]!);
    flag.dispose();
  }
  return out;
}

/**
 * The non-finite guard of a one-arena step: one good update (arena seed 30, gradients from seeds 60…), then
 * gradients from seeds 70… with `poison` applied, stepped with a fresh flag. Returns the flag, what the step
 * returned, and the parameters and the state buffer `stateKey` before and after the poisoned step.
 */
export async function poisonedStep(
  b: Backend,
  sizes: readonly number[],
  stateKey: string,
  step: (arena: ParamArena, nanFlag?: Tensor) => Tensor,
  poison: (gs: Float64Array[]) => void,
): Promise<{ flag: Tensor; returned: Tensor; before: Float32Array[]; after: Float32Array[]; arena: ParamArena }> {
  const arena = randomArena(b, sizes, 30);
  writeGrads(
    arena,
    sizes.map((n, i) => randomArray(n, 60 + i)),
  );
  step(arena).dispose();
  const snapshot = () => Promise.all([...arena.names.map((n) => arena.read(n)), arena.stateBuffer(stateKey).read()]);
  const before = await snapshot();
  const gs = sizes.map((n, i) => randomArray(n, 70 + i));
  poison(gs);
  writeGrads(arena, gs);
  const flag = zeros(b, [1]);
  const returned = step(arena, flag);
  return { flag, returned, before, after: await snapshot(), arena };
}
