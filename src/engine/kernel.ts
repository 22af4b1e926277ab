// A kernel is plain data: WGSL source (a pure function of its parameters) plus dispatch size and cost.

/** One dispatch, ready to run: everything a backend needs, nothing GPU-specific. */
export interface Kernel {
  /** Short op name, used in profiles and error messages. */
  name: string;
  /** WGSL source; bindings are `@group(0) @binding(i)` in the order the caller passes buffers. */
  source: () => string;
  /** Workgroup counts (x, y, z), each at most 65535. */
  workgroups: readonly [number, number, number];
  /** Floating point operations this dispatch performs (multiply-add = 2). */
  flops: number;
  /** Bytes it reads plus bytes it writes, counting each element once. */
  bytes: number;
  /**
   * Problem sizes passed at run time instead of baked into the source, so one pipeline serves
   * many shapes: 32-bit words (u32/i32/f32 bit patterns, at most 64) bound as a uniform buffer at
   * `@group(0) @binding(n)`, where n is the number of storage bindings the caller passes.
   */
  uniforms?: Uint32Array;
}

/** Most uniform words one kernel may pass (one 256-byte slot of the backend's uniform arena). */
export const MAX_UNIFORM_WORDS = 64;

/** Largest workgroup count WebGPU guarantees per dimension. */
export const MAX_GROUPS = 65535;

/**
 * Split `n` workgroups into an (x, y) grid within the per-dimension limit. Shaders recover
 * the linear index as `wid.x + wid.y * gridX` and must bounds-check it.
 */
export function grid(n: number): [number, number, number] {
  if (n <= MAX_GROUPS) return [Math.max(1, n), 1, 1];
  const y = Math.ceil(n / MAX_GROUPS);
  if (y > MAX_GROUPS) throw new Error(`dispatch of ${n} workgroups exceeds ${MAX_GROUPS}^2`);
  return [Math.ceil(n / y), y, 1];
}

const interned = new Map<string, string>();

/**
 * One string object per distinct source text: two generators (or two parameter sets) that produce
 * the same text hand the pipeline cache the same object, whose hash V8 keeps, so a lookup that hits
 * compares pointers instead of kilobytes of WGSL.
 */
function intern(source: string): string {
  const hit = interned.get(source);
  if (hit !== undefined) return hit;
  interned.set(source, source);
  return source;
}

/**
 * Memoize a WGSL generator by its parameters, so building the same kernel twice costs a map
 * lookup. `key` names the parameters the source depends on; it runs on every dispatch, so a
 * generator whose parameters carry sizes (which go into uniforms, not the source) or long text
 * should pass a short one. The default, JSON of the whole parameter object, is always correct.
 */
export function memoSource<P>(name: string, gen: (p: P) => string, key: (p: P) => string = JSON.stringify): (p: P) => () => string {
  const sources = new Map<string, string>();
  return (p: P) => () => {
    const k = key(p);
    let s = sources.get(k);
    if (s === undefined) sources.set(k, (s = intern(gen(p))));
    return s;
  };
}
