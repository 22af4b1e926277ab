// GPU buffer pool with size classes: buffers are reused, never destroyed mid-run, and every live byte is counted.

/** Storage buffer usage for every pooled buffer: readable, writable, copyable. */
export const STORAGE_USAGE = 0x80 /* STORAGE */ | 0x4 /* COPY_SRC */ | 0x8 /* COPY_DST */;

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

/** What the pool holds: live (owned by tensors) and free (cached for reuse), with the peak of live bytes. */
export interface PoolStats {
  liveBuffers: number;
  liveBytes: number;
  peakLiveBytes: number;
  freeBuffers: number;
  freeBytes: number;
}

/** Anything that can create buffers: a real GPUDevice, or the meta device's shape-only stand-in. */
export interface BufferFactory<B> {
  create(bytes: number): B;
  destroy(buf: B): void;
}

/** A pool of buffers in size classes; `acquire`/`release` are the only ways buffers change hands. */
export class BufferPool<B> {
  private free = new Map<number, B[]>();
  private sizes = new Map<B, number>();
  private live = new Set<B>();
  private liveBytes = 0;
  private peak = 0;
  private freeBytes = 0;

  constructor(private readonly factory: BufferFactory<B>, private readonly maxFreeBytes = 2 ** 30) {}

  /** A buffer of at least `bytes` bytes, owned by the caller until `release`. */
  acquire(bytes: number): B {
    const cls = sizeClass(bytes);
    const list = this.free.get(cls);
    let buf = list?.pop();
    if (buf !== undefined) this.freeBytes -= cls;
    else {
      buf = this.factory.create(cls);
      this.sizes.set(buf, cls);
    }
    this.live.add(buf);
    this.liveBytes += cls;
    this.peak = Math.max(this.peak, this.liveBytes);
    return buf;
  }

  /** Give a buffer back; it is reused by the next acquire of its class. */
  release(buf: B): void {
    if (!this.live.delete(buf)) throw new Error('BufferPool.release: buffer is not live (double free?)');
    const cls = this.sizes.get(buf)!;
    this.liveBytes -= cls;
    if (this.freeBytes + cls > this.maxFreeBytes) {
      this.sizes.delete(buf);
      this.factory.destroy(buf);
      return;
    }
    let list = this.free.get(cls);
    if (!list) this.free.set(cls, (list = []));
    list.push(buf);
    this.freeBytes += cls;
  }

  /** Destroy every cached free buffer (live ones stay). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) { this.sizes.delete(b); this.factory.destroy(b); }
    this.free.clear();
    this.freeBytes = 0;
  }

  /** Start measuring a new peak from the current live bytes. */
  resetPeak(): void {
    this.peak = this.liveBytes;
  }

  stats(): PoolStats {
    let freeBuffers = 0;
    for (const l of this.free.values()) freeBuffers += l.length;
    return { liveBuffers: this.live.size, liveBytes: this.liveBytes, peakLiveBytes: this.peak, freeBuffers, freeBytes: this.freeBytes };
  }
}
