// Parameter arenas: all trainable tensors of a group in one buffer (and their gradients in another),
// so clipping and the optimizer touch every parameter in one dispatch.
import type { Backend } from '../backend.js';
import { keep, Tensor } from '../tensor.js';

/** WebGPU's minStorageBufferOffsetAlignment, in f32 elements: each view starts on a multiple of it. */
export const ARENA_ALIGN = 256 / 4;

/** One parameter of an arena: its name, shape and initial values. */
export interface ArenaEntry {
  name: string;
  shape: readonly number[];
  init: Float32Array;
}

/**
 * One storage for the parameters, one for the gradients, and lazily one per optimizer state buffer,
 * each parameter a view at a 256-byte-aligned offset (padding stays zero everywhere, so flat kernels
 * may run over it). Parameters require grad and their `.grad` is the matching view of the gradient
 * storage, so backward accumulates in place; `zeroGrad` clears all at once. Every view holds its
 * storage, so disposing one parameter frees nothing the others use; `dispose()` releases the arena.
 */
export class ParamArena {
  /** Elements per flat buffer, including alignment padding. */
  readonly numel: number;
  /** The parameter views by name, in the order given. */
  readonly params: ReadonlyMap<string, Tensor>;
  /** Element offset of each parameter in the flat buffers. */
  readonly offsets: ReadonlyMap<string, number>;
  /** Flat views over the whole buffers, for fused optimizer and norm kernels. */
  readonly flatParams: Tensor;
  readonly flatGrads: Tensor;
  private readonly state = new Map<string, Tensor>();
  private disposed = false;

  constructor(readonly backend: Backend, entries: readonly ArenaEntry[]) {
    const offsets = new Map<string, number>();
    let n = 0;
    for (const e of entries) {
      const size = e.shape.reduce((a, b) => a * b, 1);
      if (e.init.length !== size) throw new Error(`ParamArena: ${e.name} has ${e.init.length} initial values for shape [${e.shape}]`);
      if (offsets.has(e.name)) throw new Error(`ParamArena: duplicate parameter ${e.name}`);
      offsets.set(e.name, n);
      n += Math.ceil(size / ARENA_ALIGN) * ARENA_ALIGN;
    }
    this.offsets = offsets;
    this.numel = Math.max(n, ARENA_ALIGN);
    this.flatParams = keep(new Tensor(backend, backend.alloc(this.numel * 4), [this.numel]));
    this.flatGrads = keep(new Tensor(backend, backend.alloc(this.numel * 4), [this.numel]));
    if (backend.kind === 'gpu') {
      const host = new Float32Array(this.numel);
      for (const e of entries) host.set(e.init, offsets.get(e.name)!);
      backend.write(this.flatParams.storage, 0, host);
    }
    this.zeroGrad();
    const params = new Map<string, Tensor>();
    for (const e of entries) {
      const off = offsets.get(e.name)! * 4;
      const p = keep(new Tensor(backend, this.flatParams.storage, e.shape, 'f32', off, true));
      p.name = e.name;
      p.grad = keep(new Tensor(backend, this.flatGrads.storage, e.shape, 'f32', off));
      params.set(e.name, p);
    }
    this.params = params;
  }

  /** The parameter view by name. */
  get(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`ParamArena: no parameter named ${name}`);
    return t;
  }

  get names(): string[] {
    return [...this.params.keys()];
  }

  /** GPU bytes the arena holds: parameters, gradients and optimizer state. */
  get bytes(): number {
    return this.numel * 4 * (2 + this.state.size);
  }

  /** The keys of the optimizer state buffers made so far, in the order they were made (a run-state file saves each). */
  get stateKeys(): string[] {
    return [...this.state.keys()];
  }

  /** Flat optimizer state buffer `key`, zero-initialized on first use and owned by the arena (do not dispose). */
  stateBuffer(key: string): Tensor {
    let t = this.state.get(key);
    if (!t) {
      t = keep(new Tensor(this.backend, this.backend.alloc(this.numel * 4), [this.numel]));
      this.backend.clear(t.storage, 0, this.numel * 4);
      this.state.set(key, t);
    }
    return t;
  }

  /** Clear every gradient (one buffer fill). */
  zeroGrad(): void {
    this.backend.clear(this.flatGrads.storage, 0, this.numel * 4);
  }

  /** Read one parameter's values. */
  read(name: string): Promise<Float32Array> {
    return this.get(name).read();
  }

  /** Read one parameter's gradient. */
  readGrad(name: string): Promise<Float32Array> {
    return this.get(name).grad!.read();
  }

  /** Release every view and buffer; the storages return to the pool once no view (a tape hold) remains. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.params.values()) v.dispose();
    this.flatParams.dispose();
    this.flatGrads.dispose();
    for (const t of this.state.values()) t.dispose();
    this.state.clear();
  }
}
