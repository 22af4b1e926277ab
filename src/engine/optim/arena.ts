// Parameter arenas: all trainable tensors of a group in one buffer (and their gradients in another),
// so clipping and the optimizer touch every parameter in one dispatch.
import type { Backend, Storage } from '../backend.js';
import { keep, Tensor } from '../tensor.js';

/** WebGPU's minStorageBufferOffsetAlignment: each view starts on a multiple of it. */
const ALIGN_ELEMS = 256 / 4;

export interface ArenaEntry {
  name: string;
  shape: number[];
  init: Float32Array;
}

/**
 * One storage for the parameters, one for the gradients, and lazily more for optimizer state, each
 * parameter a view at a 256-byte-aligned offset. Parameters require grad and their `.grad` is the
 * matching view of the gradient storage, so backward accumulates in place; `zeroGrad` clears all
 * at once. Never dispose views one by one: `dispose()` releases the arena.
 */
export class ParamArena {
  /** Elements including alignment padding (which stays zero in every buffer). */
  readonly numel: number;
  private readonly offsets = new Map<string, number>();
  private readonly views = new Map<string, Tensor>();
  readonly paramStorage: Storage;
  readonly gradStorage: Storage;
  private readonly state = new Map<string, Storage>();
  /** Flat views over the whole buffers, for fused optimizer and norm kernels. */
  readonly flatParams: Tensor;
  readonly flatGrads: Tensor;

  constructor(readonly backend: Backend, readonly entries: readonly ArenaEntry[]) {
    let n = 0;
    for (const e of entries) {
      const size = e.shape.reduce((a, b) => a * b, 1);
      if (e.init.length !== size) throw new Error(`ParamArena: ${e.name} has ${e.init.length} initial values for shape [${e.shape}]`);
      if (this.offsets.has(e.name)) throw new Error(`ParamArena: duplicate parameter ${e.name}`);
      this.offsets.set(e.name, n);
      n += Math.ceil(size / ALIGN_ELEMS) * ALIGN_ELEMS;
    }
    this.numel = Math.max(n, ALIGN_ELEMS);
    this.paramStorage = backend.alloc(this.numel * 4);
    this.gradStorage = backend.alloc(this.numel * 4);
    this.flatParams = keep(new Tensor(backend, this.paramStorage, [this.numel]));
    this.flatGrads = keep(new Tensor(backend, this.gradStorage, [this.numel]));
    if (backend.kind === 'gpu') {
      const host = new Float32Array(this.numel);
      for (const e of entries) host.set(e.init, this.offsets.get(e.name)!);
      backend.write(this.paramStorage, 0, host);
    }
    this.zeroGrad();
    for (const e of entries) {
      const off = this.offsets.get(e.name)! * 4;
      const p = keep(new Tensor(backend, this.paramStorage, e.shape, 'f32', off, true));
      p.name = e.name;
      p.grad = keep(new Tensor(backend, this.gradStorage, e.shape, 'f32', off));
      this.views.set(e.name, p);
    }
  }

  /** The parameter view by name. */
  get(name: string): Tensor {
    const t = this.views.get(name);
    if (!t) throw new Error(`ParamArena: no parameter named ${name}`);
    return t;
  }

  get names(): string[] {
    return [...this.views.keys()];
  }

  get bytes(): number {
    return this.numel * 4 * (2 + this.state.size);
  }

  /** Optimizer state buffer `key` (zero-initialized on first use), as a flat view. */
  stateBuffer(key: string): Tensor {
    let s = this.state.get(key);
    if (!s) {
      s = this.backend.alloc(this.numel * 4);
      this.backend.clear(s, 0, this.numel * 4);
      s.refs++; // the arena's own hold; views come and go
      this.state.set(key, s);
    }
    return keep(new Tensor(this.backend, s, [this.numel]));
  }

  /** Clear every gradient (one buffer fill). */
  zeroGrad(): void {
    this.backend.clear(this.gradStorage, 0, this.numel * 4);
  }

  /** Read one parameter's values. */
  read(name: string): Promise<Float32Array> {
    return this.get(name).read();
  }

  /** Read one parameter's gradient. */
  readGrad(name: string): Promise<Float32Array> {
    return this.get(name).grad!.read();
  }

  dispose(): void {
    for (const v of this.views.values()) v.dispose();
    this.views.clear();
    this.flatParams.dispose();
    this.flatGrads.dispose();
    for (const s of this.state.values()) if (--s.refs === 0) this.backend.release(s);
    this.state.clear();
  }
}
