// Kernel limits: what a WGSL source needs (storage buffers, workgroup size and memory) read as Dawn counts it, and a device with WebGPU's default limits refusing a kernel past them with a KernelLimitError, not a validation error.
import { describe, expect, it } from 'vitest';
import { DEFAULT_KERNEL_LIMITS, KernelLimitError, kernelLimitProblems, kernelNeeds, WEBGPU_DEFAULT_LIMITS } from './kernel-limits.js';
import { empty } from './tensor.js';
import { testGpuWithLimits } from './testing/gpu.js';

/** A kernel with `n` storage buffers (the last written), `words` f32s of workgroup memory in two arrays and a workgroup of `wg`. */
function source(n: number, words = [64, 0], wg = '64'): string {
  const binds = Array.from({ length: n }, (_, i) => `@group(0) @binding(${i}) var<storage, ${i === n - 1 ? 'read_write' : 'read'}> b${i}: array<f32>;`);
  const sum = Array.from({ length: n - 1 }, (_, i) => `b${i}[0]`).join(' + ') || '0.0';
  const mem = words.map((w, i) => (w ? `var<workgroup> w${i}: array<f32, ${w}>;` : '')).join('\n');
  const touch = words.map((w, i) => (w ? ` w${i}[lid % ${w}u] = 1.0; workgroupBarrier(); acc += w${i}[0];` : '')).join('');
  return `${binds.join('\n')}
@group(0) @binding(${n}) var<uniform> u: vec4<u32>;
${mem}
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) lid: u32) {
  var acc = ${sum};${touch}
  if (lid == 0u) { b${n - 1}[0] = acc + f32(u.x); }
}`;
}

describe('what a kernel needs', () => {
  it('counts storage bindings (not the uniform), workgroup size and memory rounded to 16 bytes per variable', () => {
    expect(kernelNeeds(source(9, [4095, 1], '16, 8'))).toEqual({ storageBuffers: 9, workgroupSize: [16, 8, 1], workgroupBytes: 16384 + 16 });
    expect(kernelNeeds('var<workgroup> t: array<vec4<f32>, 10>;\nvar<workgroup> x: vec2<f32>;\n@compute @workgroup_size(8, 4, 2) fn main() {}')).toEqual({ storageBuffers: 0, workgroupSize: [8, 4, 2], workgroupBytes: 160 + 16 });
    // A type the reader does not size makes the total NaN, which the guard test refuses.
    expect(kernelNeeds('var<workgroup> m: mat4x4<f32>;\n@compute @workgroup_size(1) fn main() {}').workgroupBytes).toBeNaN();
    expect(kernelLimitProblems('k', source(9, [4096, 0], '16, 32'), DEFAULT_KERNEL_LIMITS)).toEqual([
      'kernel "k" binds storage buffers: 9, but this GPU\'s maxStorageBuffersPerShaderStage is 8',
      'kernel "k" runs invocations per workgroup: 512, but this GPU\'s maxComputeInvocationsPerWorkgroup is 256',
    ]);
    expect(kernelLimitProblems('k', source(8, [4096, 0], '256'), DEFAULT_KERNEL_LIMITS)).toEqual([]);
  });
});

describe('a device with WebGPU default limits', () => {
  it('runs a kernel at every limit and refuses one past each with a KernelLimitError naming the limit; Dawn agrees', async () => {
    const { backend: b, device } = await testGpuWithLimits(WEBGPU_DEFAULT_LIMITS);
    expect(b.maxStorageBuffers).toBe(8);
    const run = (name: string, src: string, n: number) => {
      const bufs = Array.from({ length: n }, () => empty(b, [4]));
      try {
        b.run({ name, source: () => src, workgroups: [1, 1, 1], flops: 0, bytes: 0, uniforms: new Uint32Array(4) }, bufs.map((t) => t.binding()));
      } finally {
        for (const t of bufs) t.dispose();
      }
    };
    run('fits', source(8, [4096, 0], '256'), 8);
    await b.sync();
    const over: [string, number, RegExp][] = [
      [source(9), 9, /binds storage buffers: 9, but this GPU's maxStorageBuffersPerShaderStage is 8/],
      // 16,384 bytes as declared, 16,400 as Dawn counts (each variable rounded up to 16).
      [source(2, [4095, 1]), 2, /uses workgroup memory bytes: 16400, but this GPU's maxComputeWorkgroupStorageSize is 16384/],
      [source(2, [64, 0], '16, 32'), 2, /runs invocations per workgroup: 512, but this GPU's maxComputeInvocationsPerWorkgroup is 256/],
    ];
    for (const [src, n, msg] of over) {
      let err: unknown = null;
      try {
        run('too_big', src, n);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(KernelLimitError);
      expect((err as Error).message).toMatch(msg);
      expect((err as Error).message).toMatch(/kernel "too_big"/);
      // WebGPU itself refuses the same source on this device (so the reading above is the device's).
      device.pushErrorScope('validation');
      const module = device.createShaderModule({ code: src });
      device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      expect(await device.popErrorScope()).not.toBeNull();
    }
    await b.sync();
  });
});
