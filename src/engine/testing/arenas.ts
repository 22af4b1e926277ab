// Test fixtures for optimizer tests: small arenas of random parameters, gradients written straight into their views.
import type { Backend } from '../backend.js';
import { ParamArena } from '../optim/arena.js';
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
