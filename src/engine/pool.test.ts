// The buffer pool: reuse at once, destroy only after the GPU is done, count what the device holds, respect the adapter's limits.
import { describe, expect, it } from 'vitest';
import { add } from './ops/elementwise.js';
import { BufferLimitError, BufferPool, cacheLimitFor, DEFAULT_CACHE_LIMIT, MAX_CACHE_LIMIT, sizeClass } from './pool.js';
import { empty, scope, tensor, type Tensor } from './tensor.js';
import { testBackend, testGpuWithLimits } from './testing/gpu.js';

const MiB = 2 ** 20;

/** A pool of numbered fake buffers that records what was destroyed. */
function fakePool(cacheLimit: number, limits: { maxBufferSize?: number; maxStorageBufferBindingSize?: number } = {}) {
  let next = 0;
  const destroyed: number[] = [];
  const sizes = new Map<number, number>();
  const pool = new BufferPool<number>(
    {
      create: (b) => (sizes.set(next, b), next++),
      destroy: (id) => destroyed.push(id),
    },
    { cacheLimit, ...limits },
  );
  return { pool, destroyed, sizes };
}

describe('buffer pool bookkeeping', () => {
  it('reuses a released buffer at once and destroys nothing before the work that used it is done', () => {
    const { pool, destroyed } = fakePool(0);
    const a = pool.acquire(1000);
    pool.release(a);
    expect(pool.acquire(900)).toBe(a); // same size class, handed out again straight away
    const b = pool.acquire(MiB);
    pool.release(a);
    pool.release(b);
    expect(destroyed).toEqual([]); // over the limit of 0, yet recorded work may still read them
    expect(pool.stats()).toMatchObject({ liveBytes: 0, freeBytes: 0, retiringBytes: 1024 + MiB, heldBytes: 1024 + MiB, freeBuffers: 2 });
    const m = pool.mark();
    const c = pool.acquire(MiB); // reused from the retiring ones: WebGPU orders it after the earlier reads
    expect(c).toBe(b);
    pool.release(c); // released after the mark: the next submit still uses it
    pool.done(m);
    expect(destroyed).toEqual([a]);
    expect(pool.stats()).toMatchObject({ heldBytes: MiB, retiringBytes: MiB });
    pool.done(pool.mark());
    expect(destroyed).toEqual([a, b]);
    expect(pool.stats()).toMatchObject({ heldBytes: 0, freeBuffers: 0 });
  });

  it('keeps the most recently released buffers up to the cache limit, destroying the oldest first', () => {
    const { pool, destroyed } = fakePool(2 * MiB);
    const bufs = [0, 1, 2, 3].map(() => pool.acquire(MiB));
    for (const b of bufs) pool.release(b);
    pool.done(pool.mark());
    expect(destroyed).toEqual([bufs[0], bufs[1]]);
    expect(pool.stats()).toMatchObject({ freeBytes: 2 * MiB, retiringBytes: 0, heldBytes: 2 * MiB, cacheLimit: 2 * MiB });
    pool.setCacheLimit(MiB);
    expect(destroyed).toEqual([bufs[0], bufs[1], bufs[2]]);
    pool.trim();
    expect(pool.stats().heldBytes).toBe(0);
  });

  it('hands the same buffers to the same sequence of acquires and releases, step after step', () => {
    const { pool } = fakePool(64 * MiB);
    // A step: three temporaries of one size and one of another, freed in an order unlike their acquires.
    const step = () => {
      const [x, y, z] = [pool.acquire(MiB), pool.acquire(MiB), pool.acquire(MiB)];
      const w = pool.acquire(2 * MiB);
      for (const b of [x, w, z, y]) pool.release(b);
      return [x, y, z, w];
    };
    const first = step();
    for (let i = 0; i < 3; i++) expect(step()).toEqual(first);
    // A buffer held across steps (a weight, say) leaves the others' assignment stable too.
    const held = pool.acquire(MiB);
    const next = step();
    expect(next).not.toContain(held);
    expect(step()).toEqual(next);
    pool.release(held);
  });

  it('tracks the peak of held bytes (live + cached + retiring) next to the live peak, and resets both', () => {
    const { pool } = fakePool(0);
    const a = pool.acquire(4 * MiB);
    pool.release(a);
    const b = pool.acquire(2 * MiB); // another class: a new buffer while the first still waits
    let s = pool.stats();
    expect(s.peakLiveBytes).toBe(4 * MiB);
    expect(s.heldBytes).toBe(6 * MiB);
    expect(s.peakHeldBytes).toBe(6 * MiB);
    pool.release(b);
    pool.done(pool.mark());
    pool.resetPeak();
    s = pool.stats();
    expect(s).toMatchObject({ peakLiveBytes: 0, peakHeldBytes: 0, heldBytes: 0, largestBuffer: 4 * MiB });
  });

  it('checks each buffer against the limits after size-class rounding, and names size, limit and remedy', () => {
    // 72.4 MiB rounds to an 80 MiB class: fine under 128 MiB.
    const { pool } = fakePool(0, { maxBufferSize: 256 * MiB, maxStorageBufferBindingSize: 128 * MiB });
    expect(sizeClass(72.4 * MiB)).toBe(80 * MiB);
    expect(pool.bufferSize(72.4 * MiB)).toBe(80 * MiB);
    expect(pool.bufferSize(128 * MiB)).toBe(128 * MiB);
    const err = (() => {
      try {
        pool.acquire(129 * MiB);
      } catch (e) {
        return e as Error;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(BufferLimitError);
    expect(err!.message).toMatch(/129\.0 MiB tensor needs a 144\.0 MiB buffer/);
    expect(err!.message).toMatch(/maxStorageBufferBindingSize is 128\.0 MiB/);
    expect(err!.message).toMatch(/Lower the resolution or the batch size/);
    expect(pool.stats().heldBytes).toBe(0); // refused before anything was created
    // Where only the rounding crosses the limit, the buffer takes the tensor's own size.
    const odd = fakePool(0, { maxBufferSize: 76 * MiB });
    expect(odd.pool.bufferSize(72.4 * MiB)).toBe(Math.ceil((72.4 * MiB) / 256) * 256);
    expect(() => odd.pool.acquire(77 * MiB)).toThrow(/maxBufferSize is 76\.0 MiB/);
  });

  it('sizes the cache to the headroom between the forecast peak and the device, default when unknown', () => {
    expect(cacheLimitFor(3 * 2 ** 30)).toBe(DEFAULT_CACHE_LIMIT);
    expect(cacheLimitFor(3 * 2 ** 30, 4 * 2 ** 30)).toBe(2 ** 29);
    expect(cacheLimitFor(3 * 2 ** 30, 24 * 2 ** 30)).toBe(MAX_CACHE_LIMIT);
    expect(cacheLimitFor(5 * 2 ** 30, 4 * 2 ** 30)).toBe(0);
  });
});

describe('buffer pool on a real device', () => {
  it('frees more than the cache limit between two submits without destroying buffers recorded work still uses', async () => {
    const b = await testBackend();
    await b.sync();
    const limit = b.pool().cacheLimit;
    b.setCacheLimit(64 * 1024);
    try {
      const n = 64 * 1024; // 256 KiB tensors: four of them are 16x the cache limit
      const xs = [0, 1, 2, 3].map((i) => tensor(b, new Float32Array(n).fill(i + 1), [n]));
      // Recorded, not yet submitted: each sum reads its input, then both are freed (over the limit).
      const sums = scope(() => xs.map((x) => add(add(x, x), x)));
      for (const x of xs) x.dispose();
      const total = scope(() => add(add(sums[0]!, sums[1]!), add(sums[2]!, sums[3]!)));
      for (const s of sums) s.dispose();
      expect(b.pool().retiringBytes).toBeGreaterThan(0);
      const out = await total.read(); // the submit that records all of the above
      total.dispose();
      expect(out[0]).toBe(3 * (1 + 2 + 3 + 4));
      expect(out[n - 1]).toBe(30);
      await b.sync(); // no "used in submit while destroyed" error surfaces here
      const s = b.pool();
      expect(s.retiringBytes).toBe(0);
      expect(s.freeBytes).toBeLessThanOrEqual(64 * 1024);
    } finally {
      b.setCacheLimit(limit);
    }
  });
});

describe('a device at WebGPU default limits', () => {
  it('allocates up to its 128 MiB binding limit and refuses beyond it before asking the GPU', async () => {
    const { backend: b, device } = await testGpuWithLimits({ maxStorageBufferBindingSize: 128 * MiB });
    expect(device.limits.maxStorageBufferBindingSize).toBe(128 * MiB);
    const fits: Tensor = empty(b, [31.5 * MiB]); // 126 MiB of f32 in a 128 MiB class
    expect(fits.storage.bytes).toBe(128 * MiB);
    fits.dispose();
    const err = (() => {
      try {
        empty(b, [33 * MiB]).dispose();
      } catch (e) {
        return e as Error;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(BufferLimitError);
    expect(err!.message).toMatch(/132\.0 MiB tensor needs a 144\.0 MiB buffer, but this GPU's maxStorageBufferBindingSize is 128\.0 MiB/);
    await b.sync();
    b.setCacheLimit(0);
    expect(b.pool().heldBytes).toBe(0);
  });
});
