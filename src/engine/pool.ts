// GPU buffer pool with size classes: buffers are reused at once, destroyed only after the GPU is done with them, and every held byte is counted.
import { formatBytes } from './bytes.js';

/** Storage buffer usage for every pooled buffer: readable, writable, copyable. */
export const STORAGE_USAGE = 0x80 /* STORAGE */ | 0x4 /* COPY_SRC */ | 0x8 /* COPY_DST */;

/** Free bytes kept for reuse when nothing better is known about the device (WebGPU does not say how much memory it has). */
export const DEFAULT_CACHE_LIMIT = 256 * 2 ** 20;

/** The most free bytes worth keeping cached, however much memory the device has. */
export const MAX_CACHE_LIMIT = 2 ** 30;

/**
 * Size classes: powers of two up to 1 MiB, then steps of 1/8 of the power of two, so
 * a pooled buffer wastes at most 12.5% (large) or 50% (small, where it does not matter).
 */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 256) * 256);
  if (b <= 1 << 20) return 2 ** Math.ceil(Math.log2(b));
  const p = 2 ** Math.floor(Math.log2(b));
  const step = p / 8;
  return Math.ceil(b / step) * step;
}

/**
 * The free-cache limit for a run: half the headroom between the forecast peak and the device's
 * memory, at most 1 GiB; the default when the memory is unknown. Within one synchronous stretch of
 * work nothing is destroyed anyway (see BufferPool), so the limit bounds what stays cached between
 * steps and phases (latent caching, previews), where cached buffers of other sizes sit idle.
 */
export function cacheLimitFor(peakBytes: number, deviceBytes?: number): number {
  if (deviceBytes === undefined || !(deviceBytes > 0)) return DEFAULT_CACHE_LIMIT;
  return Math.min(MAX_CACHE_LIMIT, Math.max(0, Math.floor((deviceBytes - peakBytes) / 2)));
}

/** What the pool holds: live (owned by tensors) and free (cached for reuse), with peaks since `resetPeak`. */
export interface PoolStats {
  liveBuffers: number;
  liveBytes: number;
  peakLiveBytes: number;
  /** Free buffers, within the cache limit or beyond it (awaiting destruction); all reusable. */
  freeBuffers: number;
  /** Free bytes within the cache limit. */
  freeBytes: number;
  /** Free bytes beyond the cache limit, destroyed once the GPU has finished the work that used them. */
  retiringBytes: number;
  /** What the device holds for the pool: live + free + retiring. */
  heldBytes: number;
  peakHeldBytes: number;
  cacheLimit: number;
  /** The largest buffer made since the pool was, after size-class rounding. */
  largestBuffer: number;
}

/** Anything that can create buffers: a real GPUDevice, or the meta device's shape-only stand-in. */
export interface BufferFactory<B> {
  create(bytes: number): B;
  destroy(buf: B): void;
}

/** Limits every buffer must respect (the adapter's), and how many free bytes to keep. */
export interface PoolOptions {
  cacheLimit?: number;
  maxBufferSize?: number;
  maxStorageBufferBindingSize?: number;
}

/** An allocation larger than the device allows: names the size, the limit and what to change. */
export class BufferLimitError extends Error {
  constructor(readonly requested: number, readonly bufferBytes: number, readonly limitName: string, readonly limit: number) {
    const mib = (b: number) => formatBytes(b, { unit: 'MiB' });
    const what = bufferBytes > requested ? `a ${mib(requested)} tensor needs a ${mib(bufferBytes)} buffer` : `a ${mib(requested)} buffer is needed`;
    super(
      `GPU buffer too large: ${what}, but this GPU's ${limitName} is ${mib(limit)}. ` +
        'Lower the resolution or the batch size, or turn on gradient checkpointing, so that no single tensor is that large.',
    );
    this.name = 'BufferLimitError';
  }
}

/**
 * A pool of buffers in size classes; `acquire`/`release` are the only ways buffers change hands.
 *
 * Which free buffer an acquire gets depends only on which buffers of its size are free, not on the
 * order they were released in: the one made first (so a step that found the pool empty and made
 * its buffers gets them again in the same order). A training step that acquires and releases in the
 * same sequence as the step before thus gets the same buffers, step after step, and the backend's
 * bind groups (keyed by buffer) are reused. Handing out the last released instead permuted a size's
 * buffers from step to step (release order differs from acquire order): 11-14% of a tiny step's
 * dispatches found their bind group cached.
 *
 * A released buffer is reusable by the next acquire at once: work is recorded and submitted in
 * order, so a later dispatch that reuses it runs after the earlier ones that read it. Destroying is
 * different: a buffer destroyed while recorded work still uses it fails that work's submit. So
 * release never destroys; the backend calls `mark()` after each submit and `done(mark)` once the GPU
 * has finished that work, and only then are free buffers beyond the cache limit destroyed, oldest
 * first. Until then they stay reusable and are counted as retiring.
 */
export class BufferPool<B> {
  /** Free buffers by size, made last first: `pop` hands out the earliest made. */
  private free = new Map<number, B[]>();
  /** Each buffer's creation number: the free lists' sort key. */
  private made = new Map<B, number>();
  private creations = 0;
  /** Every free buffer with the sequence number of its release, oldest first (Map keeps insertion order). */
  private order = new Map<B, number>();
  private sizes = new Map<B, number>();
  private live = new Set<B>();
  private liveBytes = 0;
  private freeTotal = 0;
  private peakLive = 0;
  private peakHeld = 0;
  private largest = 0;
  /** Releases so far; those numbered below `safe` are no longer used by any unfinished work. */
  private seq = 0;
  private safe = 0;
  private limit: number;
  private readonly maxBuffer: number;
  private readonly maxBinding: number;

  constructor(private readonly factory: BufferFactory<B>, o: PoolOptions = {}) {
    this.limit = o.cacheLimit ?? DEFAULT_CACHE_LIMIT;
    this.maxBuffer = o.maxBufferSize ?? Infinity;
    this.maxBinding = o.maxStorageBufferBindingSize ?? Infinity;
  }

  /**
   * The buffer size for `bytes`: its size class, or the exact size (to 256 bytes) when only the
   * rounding would cross the device's limits. Throws a BufferLimitError when even that does not fit.
   */
  bufferSize(bytes: number): number {
    const cls = sizeClass(bytes);
    const cap = Math.min(this.maxBuffer, this.maxBinding);
    if (cls <= cap) return cls;
    const exact = Math.max(256, Math.ceil(bytes / 256) * 256);
    if (exact <= cap) return exact;
    const [name, limit] = this.maxBinding <= this.maxBuffer ? ['maxStorageBufferBindingSize', this.maxBinding] : ['maxBufferSize', this.maxBuffer];
    throw new BufferLimitError(bytes, cls, name, limit);
  }

  /** A buffer of at least `bytes` bytes, owned by the caller until `release`. */
  acquire(bytes: number): B {
    const size = this.bufferSize(bytes);
    let buf = this.free.get(size)?.pop();
    if (buf !== undefined) {
      this.order.delete(buf);
      this.freeTotal -= size;
    } else {
      buf = this.factory.create(size);
      this.sizes.set(buf, size);
      this.made.set(buf, this.creations++);
      this.largest = Math.max(this.largest, size);
    }
    this.live.add(buf);
    this.liveBytes += size;
    this.peakLive = Math.max(this.peakLive, this.liveBytes);
    this.peakHeld = Math.max(this.peakHeld, this.liveBytes + this.freeTotal);
    return buf;
  }

  /** Give a buffer back; it is reusable by the next acquire of its size at once and destroyed only after `done`. */
  release(buf: B): void {
    if (!this.live.delete(buf)) throw new Error('BufferPool.release: buffer is not live (double free?)');
    const size = this.sizes.get(buf)!;
    this.liveBytes -= size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    this.insertSorted(list, buf);
    this.order.set(buf, this.seq++);
    this.freeTotal += size;
  }

  /** Put `buf` into a free list kept in reverse creation order (binary search; a size's free list is short). */
  private insertSorted(list: B[], buf: B): void {
    const n = this.made.get(buf)!;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.made.get(list[mid]!)! > n) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, buf);
  }

  /** A mark covering every release so far: pass it to `done` once the work submitted up to now has finished. */
  mark(): number {
    return this.seq;
  }

  /** The GPU has finished the work submitted when `mark` was taken: destroy free buffers beyond the limit. */
  done(mark: number): void {
    this.safe = Math.max(this.safe, mark);
    this.evict(this.limit);
  }

  /** Destroy every free buffer the GPU is done with (live ones stay). */
  trim(): void {
    this.evict(0);
  }

  /** How many free bytes to keep; the excess is destroyed as soon as the GPU is done with it. */
  setCacheLimit(bytes: number): void {
    if (!(bytes >= 0)) throw new Error(`setCacheLimit: ${bytes} is not a byte count`);
    this.limit = bytes;
    this.evict(bytes);
  }

  private evict(keep: number): void {
    for (const [buf, s] of this.order) {
      if (this.freeTotal <= keep || s >= this.safe) break;
      const size = this.sizes.get(buf)!;
      const list = this.free.get(size)!;
      list.splice(list.indexOf(buf), 1);
      this.order.delete(buf);
      this.sizes.delete(buf);
      this.made.delete(buf);
      this.freeTotal -= size;
      this.factory.destroy(buf);
    }
  }

  /** Whether `buf` is owned by a caller now. */
  isLive(buf: B): boolean {
    return this.live.has(buf);
  }

  /** Whether `buf` is in the pool, free (neither owned nor destroyed). */
  isFree(buf: B): boolean {
    return this.order.has(buf);
  }

  /** Live buffers now. */
  liveBuffers(): number {
    return this.live.size;
  }

  /**
   * Count free buffers as released again now (a replayed plan used them without acquiring them): like
   * a release, this keeps them from being destroyed before the work submitted from now on is done.
   */
  touch(bufs: readonly B[]): void {
    for (const b of bufs) {
      if (!this.order.delete(b)) continue;
      this.order.set(b, this.seq++);
    }
  }

  /** Start measuring new peaks from what is live and held now. */
  resetPeak(): void {
    this.peakLive = this.liveBytes;
    this.peakHeld = this.liveBytes + this.freeTotal;
  }

  stats(): PoolStats {
    const retiringBytes = Math.max(0, this.freeTotal - this.limit);
    return {
      liveBuffers: this.live.size,
      liveBytes: this.liveBytes,
      peakLiveBytes: this.peakLive,
      freeBuffers: this.order.size,
      freeBytes: this.freeTotal - retiringBytes,
      retiringBytes,
      heldBytes: this.liveBytes + this.freeTotal,
      peakHeldBytes: this.peakHeld,
      cacheLimit: this.limit,
      largestBuffer: this.largest,
    };
  }
}
