// Tensors: a shape, a dtype and a view of pooled storage, with reference-counted ownership and scopes.
import type { Backend, Binding, Storage } from './backend.js';
import { packF16, storageBytes, unpackF16, type DType } from './dtype.js';

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** A node of the autograd tape; defined in autograd.ts, referenced here only by type. */
export interface GradNode {
  readonly id: number;
}

/**
 * A contiguous, row-major tensor. Views (reshape, parameter slices of an arena) share storage at a
 * byte offset. Compute kernels always write f32; f16 is a storage format for weights.
 */
export class Tensor {
  /** Times this handle is held: once by its owner (scope or creator), once per tape node that saved it. */
  private holds = 1;
  private ownerReleased = false;
  /** Gradient accumulated by backward; only for tensors that require it. */
  grad: Tensor | null = null;
  /** The tape node that produced this tensor, if it is on the gradient path. */
  node: GradNode | null = null;
  name = '';

  constructor(
    readonly backend: Backend,
    readonly storage: Storage,
    readonly shape: readonly number[],
    readonly dtype: DType = 'f32',
    readonly offset = 0,
    public requiresGrad = false,
  ) {
    storage.refs++;
    currentScope()?.push(this);
  }

  get size(): number {
    return numel(this.shape);
  }
  get rank(): number {
    return this.shape.length;
  }
  get bytes(): number {
    return storageBytes(this.size, this.dtype);
  }
  get disposed(): boolean {
    return this.holds <= 0;
  }

  /** The byte range kernels bind. */
  binding(): Binding {
    if (this.holds <= 0) throw new Error(`tensor ${this.name || this.shape.join('x')} used after dispose`);
    return { storage: this.storage, offset: this.offset, size: Math.max(4, this.bytes) };
  }

  /** True when this handle is the only hold on the only view of its storage: it may be adopted instead of copied. */
  get unshared(): boolean {
    return this.holds === 1 && this.storage.refs === 1;
  }

  /** Hold this tensor once more (a tape node saving it for backward); pair with `release`. */
  retain(): this {
    this.holds++;
    return this;
  }

  /**
   * Drop the owner's hold (idempotent: a scope and an explicit call may both dispose). Tape nodes'
   * holds keep the data alive until they `release` it.
   */
  dispose(): void {
    if (this.ownerReleased) return;
    this.ownerReleased = true;
    this.release();
  }

  /** Drop one hold taken with `retain`; at zero the storage reference goes, and the storage returns to the pool at its last. */
  release(): void {
    if (this.holds <= 0) return;
    if (--this.holds > 0) return;
    this.grad?.dispose();
    this.grad = null;
    if (--this.storage.refs === 0) this.backend.release(this.storage);
  }

  /** A tensor of another shape over the same storage (no copy). */
  reshape(shape: readonly number[]): Tensor {
    const s = resolveShape(shape, this.size);
    return new Tensor(this.backend, this.storage, s, this.dtype, this.offset);
  }

  /** Read the values back as f32 (waits for the GPU). */
  async read(): Promise<Float32Array> {
    const buf = await this.backend.read(this.storage, this.offset, this.bytes);
    return this.dtype === 'f32' ? new Float32Array(buf) : unpackF16(new Uint32Array(buf), this.size);
  }

  /** Overwrite the contents from host values. */
  write(data: ArrayLike<number>): void {
    if (data.length !== this.size) throw new Error(`write: ${data.length} values for a tensor of ${this.size}`);
    const bytes = this.dtype === 'f32' ? (data instanceof Float32Array ? data : Float32Array.from(data)) : packF16(data);
    this.backend.write(this.storage, this.offset, bytes);
  }

  toString(): string {
    return `Tensor(${this.name ? this.name + ', ' : ''}[${this.shape.join(', ')}], ${this.dtype}${this.requiresGrad ? ', grad' : ''})`;
  }
}

function resolveShape(shape: readonly number[], n: number): number[] {
  const s = [...shape];
  const neg = s.indexOf(-1);
  if (neg >= 0) s[neg] = n / numel(s.filter((_, i) => i !== neg));
  if (numel(s) !== n || s.some((d) => !Number.isInteger(d) || d < 0)) throw new Error(`cannot reshape ${n} elements to [${shape.join(', ')}]`);
  return s;
}

/** A fresh uninitialized tensor. */
export function empty(backend: Backend, shape: readonly number[], dtype: DType = 'f32'): Tensor {
  return new Tensor(backend, backend.alloc(storageBytes(numel(shape), dtype)), shape, dtype);
}

/** A tensor of zeros. */
export function zeros(backend: Backend, shape: readonly number[], dtype: DType = 'f32'): Tensor {
  const t = empty(backend, shape, dtype);
  backend.clear(t.storage, 0, t.storage.bytes);
  return t;
}

/** Upload host values (f32 in, stored as `dtype`). */
export function tensor(backend: Backend, data: ArrayLike<number>, shape: readonly number[], dtype: DType = 'f32'): Tensor {
  const t = empty(backend, shape, dtype);
  if (backend.kind === 'gpu') t.write(data);
  return t;
}

/** A leaf that requires gradient (a trainable parameter in tests and LoRA). */
export function param(backend: Backend, data: ArrayLike<number>, shape: readonly number[]): Tensor {
  const t = tensor(backend, data, shape);
  t.requiresGrad = true;
  return t;
}

// ---- scopes ------------------------------------------------------------------------------------

const scopes: Tensor[][] = [];

function currentScope(): Tensor[] | undefined {
  return scopes[scopes.length - 1];
}

/**
 * Run `fn` and dispose every tensor created inside it except those it returns (which move to the
 * enclosing scope). Tape nodes hold what backward needs, so freeing here never breaks a gradient.
 */
export function scope<T>(fn: () => T): T {
  const mine: Tensor[] = [];
  scopes.push(mine);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const keep = new Set<Tensor>();
  collect(result, keep);
  const parent = currentScope();
  for (const t of mine) {
    if (keep.has(t)) parent?.push(t);
    else t.dispose();
  }
  return result;
}

/** Take a tensor out of scope management: the caller disposes it. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) {
    const i = s.lastIndexOf(t);
    if (i >= 0) s.splice(i, 1);
  }
  return t;
}

function collect(v: unknown, out: Set<Tensor>): void {
  if (v instanceof Tensor) out.add(v);
  else if (Array.isArray(v)) for (const x of v) collect(x, out);
  else if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collect(x, out);
}
