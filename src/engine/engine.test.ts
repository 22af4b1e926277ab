// The GPU engine on a real device: adapter and limits, the pipeline cache and its compile errors, bind group caching, the buffer pool and autograd memory.
import { describe, expect, it } from 'vitest';
import { MetaBackend, type GpuBackend } from './backend.js';
import { noGrad } from './autograd.js';
import { backward, checkpoint } from './grad.js';
import { add, mul, silu, sum, mean } from './ops/elementwise.js';
import { ShaderCompileError } from './pipelines.js';
import { DEFAULT_CACHE_LIMIT, sizeClass } from './pool.js';
import { empty, keep, param, scope, tensor, type Tensor } from './tensor.js';
import { testBackend, testGpu } from './testing/gpu.js';
import { randomArray, assertClose } from './testing/allclose.js';

describe('device', () => {
  it('acquires a real WebGPU adapter, reports its limits and caches bind groups', async () => {
    const { adapter, backend } = await testGpu();
    expect(backend.cacheBindGroups).toBe(true);
    expect(adapter.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 2 ** 20);
    expect(adapter.limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(256);
    expect(typeof adapter.isFallback).toBe('boolean');
    expect(adapter.features).toBeInstanceOf(Array);
  });
});

/** Have the pool destroy its free buffers (a cache limit of 0 over one sync): fewer bind groups must remain, those buffers' groups gone with them. */
async function destroyFreeBuffers(b: GpuBackend): Promise<void> {
  await b.sync();
  const held = b.bindGroupCount;
  b.setCacheLimit(0);
  await b.sync();
  b.setCacheLimit(DEFAULT_CACHE_LIMIT);
  expect(b.bindGroupCount).toBeLessThan(held);
}

describe('pipeline cache', () => {
  it('reports WGSL compile errors with line numbers and the source', async () => {
    const b = await testBackend();
    const src = '@compute @workgroup_size(1)\nfn main() {\n  let x: f32 = undefined_thing;\n}';
    const err = await b.pipelines.compile('broken', src).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShaderCompileError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/kernel "broken"/);
    expect(msg).toMatch(/^3:\d+: error: .*undefined_thing/m);
    expect(msg).toContain('   3|   let x: f32 = undefined_thing;');
    await b.sync(); // the error was reported once, not again
  });

  it('compiles a list asynchronously with progress, reports a broken source as ShaderCompileError, and get() then compiles nothing', async () => {
    const b = await testBackend();
    const fill = (v: number) => `@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(1) fn main() { out[0] = ${v}.0; }`;
    const broken = '@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(1)\nfn main() {\n  out[0] = nowhere;\n}';
    const list = [1, 2, 3, 4, 5].map((v) => ({ name: `fill${v}`, source: fill(v) }));
    const before = b.pipelines.size;
    const progress: [number, number][] = [];
    const err = await b.pipelines.compileAll([...list, list[0]!, { name: 'broken_async', source: broken }], (d, t) => progress.push([d, t]), 3).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShaderCompileError);
    expect((err as Error).message).toMatch(/kernel "broken_async"/);
    expect((err as Error).message).toMatch(/^4:\d+: error: .*nowhere/m);
    // the duplicate is compiled once; every source counts, the broken one too
    expect(progress[0]).toEqual([0, 6]);
    expect(progress.at(-1)).toEqual([6, 6]);
    expect(b.pipelines.size - before).toBe(5);
    // a stop asked for between compiles: nothing more starts
    let n = 0;
    const more = [6, 7, 8, 9].map((v) => ({ name: `fill${v}`, source: fill(v) }));
    await b.pipelines.compileAll(more, () => n++, 1, () => n >= 2);
    expect(b.pipelines.size - before).toBe(6);
    const out = empty(b, [1]);
    for (const [i, k] of list.entries()) {
      b.run({ name: k.name, source: () => k.source, workgroups: [1, 1, 1], flops: 0, bytes: 0 }, [out.binding()]);
      expect(await out.read()).toEqual(new Float32Array([i + 1]));
    }
    expect(b.pipelines.size - before).toBe(6);
    out.dispose();
    await b.sync();
  });

  it('caches bind groups by buffers and ranges, across pipelines of one layout, and drops those of destroyed buffers', async () => {
    const b = await testBackend();
    await b.sync();
    const was = b.cacheBindGroups;
    b.cacheBindGroups = true;
    const x = tensor(b, [1, 2, 3], [3]);
    const y = tensor(b, [10, 20, 30], [3]);
    add(x, y).dispose();
    const groups = b.bindGroupCount;
    // the same op on the same buffers: the pool hands the output's buffer back, so nothing new
    const z = add(x, y);
    expect(b.bindGroupCount).toBe(groups);
    expect(await z.read()).toEqual(new Float32Array([11, 22, 33]));
    z.dispose();
    // another pipeline with the same bindings shares the group
    const w = mul(x, y);
    expect(b.bindGroupCount).toBe(groups);
    expect(await w.read()).toEqual(new Float32Array([10, 40, 90]));
    w.dispose();
    // a freed buffer the pool destroys takes its groups along
    x.dispose();
    y.dispose();
    await destroyFreeBuffers(b);
    b.cacheBindGroups = was;
  });

  it('reuses every bind group from the second training step on, bit-identical to uncached steps, and drops groups of destroyed buffers', async () => {
    const b = await testBackend();
    await b.sync();
    const was = b.cacheBindGroups;
    const w = [randomArray(64, 11), randomArray(64, 12), randomArray(64, 13)].map((v) => param(b, v, [64]));
    let x = tensor(b, randomArray(16 * 64, 14), [16, 64]);
    /** One forward + backward; returns the loss and gradients' bits and how many bind groups it made. */
    const step = async (cache: boolean) => {
      b.cacheBindGroups = cache;
      const g0 = b.bindGroupCount;
      const loss = scope(() => net(x, w[0]!, w[1]!, w[2]!));
      backward(loss);
      const made = b.bindGroupCount - g0;
      const bits = [await loss.read(), ...(await Promise.all(w.map((p) => p.grad!.read())))].map((a) => Array.from(new Uint32Array(a.buffer)));
      loss.dispose();
      for (const p of w) {
        p.grad!.dispose();
        p.grad = null;
      }
      return { bits, made };
    };
    try {
      const plain = await step(false);
      const first = await step(true);
      expect(first.made).toBeGreaterThan(0);
      expect(first.bits).toEqual(plain.bits);
      for (let i = 0; i < 3; i++) {
        const again = await step(true);
        expect(again.made).toBe(0); // the pool gave every op the buffers of the step before
        expect(again.bits).toEqual(plain.bits);
      }
      // A freed input and a new one with other values: the cached groups bind buffers, not values.
      x.dispose();
      x = tensor(b, randomArray(16 * 64, 15), [16, 64]);
      const fresh = await step(false);
      expect(fresh.bits).not.toEqual(plain.bits);
      expect((await step(true)).bits).toEqual(fresh.bits);
      // The pool destroys its free buffers: their groups go, and a step on new buffers still matches.
      await destroyFreeBuffers(b);
      const rebuilt = await step(true);
      expect(rebuilt.made).toBeGreaterThan(0);
      expect(rebuilt.bits).toEqual(fresh.bits);
    } finally {
      b.cacheBindGroups = was;
      for (const t of [...w, x]) t.dispose();
    }
  });

  it('reuses one pipeline per source', async () => {
    const b = await testBackend();
    const x = tensor(b, [1, 2, 3], [3]);
    scope(() => add(x, x));
    const n = b.pipelines.size;
    scope(() => add(x, x));
    expect(b.pipelines.size).toBe(n);
    x.dispose();
    await b.sync();
  });
});

describe('buffer pool', () => {
  it('rounds to size classes with bounded waste', () => {
    expect(sizeClass(1)).toBe(256);
    expect(sizeClass(1000)).toBe(1024);
    expect(sizeClass(3 * 2 ** 20 + 1)).toBeLessThanOrEqual(3 * 2 ** 20 * 1.125 + 256);
    for (const n of [5e6, 123456789]) expect(sizeClass(n) / n).toBeLessThan(1.126);
  });

  it('scopes free everything but the result', async () => {
    const b = await testBackend();
    await b.sync();
    const before = b.pool().liveBuffers;
    const x = tensor(b, randomArray(64, 1), [64]);
    const y = scope(() => silu(mul(add(x, x), x)));
    expect(b.pool().liveBuffers).toBe(before + 2);
    y.dispose();
    x.dispose();
    expect(b.pool().liveBuffers).toBe(before);
  });
});

/** A small two-layer network built from elementwise ops: loss = mean(silu(x*w1 + b1) * w2). */
function net(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor): Tensor {
  return mean(mul(silu(add(mul(x, w1), b1)), w2));
}

describe('autograd memory', () => {
  it('keeps live buffers and bytes flat over 100 forward+backward iterations', async () => {
    const b = await testBackend();
    const w1 = param(b, randomArray(32, 2), [32]);
    const b1 = param(b, randomArray(32, 3), [32]);
    const w2 = param(b, randomArray(32, 4), [32]);
    const x = tensor(b, randomArray(8 * 32, 5), [8, 32]);
    const counts: { buffers: number; bytes: number }[] = [];
    for (let i = 0; i < 100; i++) {
      const loss = scope(() => net(x, w1, b1, w2));
      backward(loss);
      loss.dispose();
      for (const p of [w1, b1, w2]) {
        p.grad?.dispose();
        p.grad = null;
      }
      const s = b.pool();
      counts.push({ buffers: s.liveBuffers, bytes: s.liveBytes });
      if (i % 25 === 0) await b.sync();
    }
    await b.sync();
    expect(counts[99]).toEqual(counts[0]);
    expect(new Set(counts.map((c) => c.bytes)).size).toBe(1);
    for (const t of [w1, b1, w2, x]) t.dispose();
  });

  it('frees activations as backward passes them and gives frozen tensors no gradient', async () => {
    const b = await testBackend();
    const w = param(b, randomArray(16, 6), [16]);
    const frozen = tensor(b, randomArray(16, 7), [16]);
    const base = b.pool().liveBuffers;
    const loss = scope(() => sum(silu(mul(mul(frozen, w), frozen))));
    const held = b.pool().liveBuffers - base;
    expect(held).toBeGreaterThan(1); // saved activations for backward
    backward(loss);
    loss.dispose();
    expect(frozen.grad).toBeNull();
    expect(w.grad).not.toBeNull();
    expect(b.pool().liveBuffers).toBe(base + 1); // only w.grad remains
    w.dispose();
    frozen.dispose();
    await b.sync();
  });
});

describe('gradient checkpointing', () => {
  it('gives identical gradients when a segment is recomputed in backward', async () => {
    const b = await testBackend();
    const data = [randomArray(32, 11), randomArray(32, 12), randomArray(32, 13)];
    const x = tensor(b, randomArray(4 * 32, 14), [4, 32]);
    const run = async (useCheckpoint: boolean) => {
      const [w1, b1, w2] = data.map((d) => param(b, d, [32])) as [Tensor, Tensor, Tensor];
      const loss = scope(() => {
        const seg = (h: Tensor) => silu(add(mul(h, w1), b1));
        const h = useCheckpoint ? checkpoint(seg, [x]) : seg(x);
        return mean(mul(h, w2));
      });
      backward(loss);
      const grads = await Promise.all([w1, b1, w2].map((p) => p.grad!.read()));
      loss.dispose();
      for (const p of [w1, b1, w2]) p.dispose();
      return grads;
    };
    const plain = await run(false);
    const checkpointed = await run(true);
    for (let i = 0; i < 3; i++) assertClose(checkpointed[i]!, plain[i]!, { atol: 0, rtol: 0 }, `checkpointed grad ${i}`);
    x.dispose();
  });
});

describe('meta device', () => {
  it('runs the same op code on shapes only, counting FLOPs and peak bytes', () => {
    const meta = new MetaBackend();
    const x = empty(meta, [1024, 1024]);
    const y = keep(noGrad(() => scope(() => silu(add(x, x)))));
    expect(y.shape).toEqual([1024, 1024]);
    expect(meta.stats.dispatches).toBe(2);
    expect(meta.stats.flops).toBe(1024 * 1024 * 5);
    expect(meta.pool().peakLiveBytes).toBe(3 * 4 * 2 ** 20);
    y.dispose();
    x.dispose();
    expect(meta.pool().liveBytes).toBe(0);
  });
});

describe('kernel uniforms', () => {
  it('runs one pipeline for many sizes, each dispatch reading its own uniform slot', async () => {
    const b = await testBackend();
    const source = `@group(0) @binding(0) var<storage, read_write> out: array<f32>;
struct U { n: u32, base: u32, scale: f32 }
@group(0) @binding(1) var<uniform> u: U;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= u.n) { return; }
  out[u.base + g.x] = f32(g.x) * u.scale;
}`;
    const out = empty(b, [1000]);
    b.clear(out.binding().storage, 0, 4000);
    const before = b.pipelines.size;
    // More dispatches than one submit's arena holds, so slots are reused across submits.
    const sizes = Array.from({ length: 600 }, (_, i) => 1 + (i % 7));
    let base = 0;
    const expected = new Float32Array(1000);
    for (const [i, n] of sizes.entries()) {
      if (base + n > 1000) base = 0;
      const scale = i + 0.5;
      const words = new Uint32Array(3);
      words[0] = n;
      words[1] = base;
      new Float32Array(words.buffer, 8, 1)[0] = scale;
      b.run({ name: 'uniform_fill', source: () => source, workgroups: [1, 1, 1], flops: 0, bytes: 0, uniforms: words }, [out.binding()]);
      for (let j = 0; j < n; j++) expected[base + j] = j * scale;
      base += n;
    }
    assertClose(await out.read(), expected, { atol: 0, rtol: 0 });
    expect(b.pipelines.size - before).toBe(1);
    out.dispose();
  });
});

describe('validation errors', () => {
  it('a read after a submit that failed validation throws its message instead of returning what the buffer held', async () => {
    const b = await testBackend();
    const out = empty(b, [1000]);
    const source = `@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(1) fn main() { out[0] = 1.0; }`;
    // Storage bindings must start on a 256-byte boundary: this dispatch's submit is dropped whole.
    b.run({ name: 'unaligned', source: () => source, workgroups: [1, 1, 1], flops: 0, bytes: 0 }, [{ storage: out.binding().storage, offset: 4, size: 16 }]);
    await expect(out.read()).rejects.toThrow(/alignment/);
    await b.sync(); // reported once
    out.dispose();
  });
});
