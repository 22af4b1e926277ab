// What a kernel's WGSL asks of a device (storage buffers, workgroup size and memory), checked against the device's limits.
import { declaredBindings } from './pipelines.js';

/** The device limits a compute kernel can pass. */
export interface KernelLimits {
  maxStorageBuffersPerShaderStage: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupSizeY: number;
  maxComputeWorkgroupSizeZ: number;
}

/**
 * WebGPU's default limits (what a device gets unless it asks for more) for the six that
 * `acquireGpu` raises to the adapter's: a device requested with these is a default device.
 */
export const WEBGPU_DEFAULT_LIMITS = {
  maxBufferSize: 256 * 2 ** 20,
  maxStorageBufferBindingSize: 128 * 2 ** 20,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxStorageBuffersPerShaderStage: 8,
} as const;

/** WebGPU's defaults for every limit in `KernelLimits`. */
export const DEFAULT_KERNEL_LIMITS: KernelLimits = { ...WEBGPU_DEFAULT_LIMITS, maxComputeWorkgroupSizeY: 256, maxComputeWorkgroupSizeZ: 64 };

/** What one kernel source needs of the device. */
export interface KernelNeeds {
  storageBuffers: number;
  workgroupSize: [number, number, number];
  /** Bytes of `var<workgroup>` memory, each variable rounded up to 16 bytes as Dawn counts it; NaN if a type is not one `kernelNeeds` sizes. */
  workgroupBytes: number;
}

/** Bytes of one element of a workgroup array (its array stride): the scalar and vector types kernels use. */
const ELEMENT_BYTES: Record<string, number> = {
  f32: 4, u32: 4, i32: 4, f16: 2, 'atomic<u32>': 4, 'atomic<i32>': 4,
  'vec2<f32>': 8, 'vec3<f32>': 16, 'vec4<f32>': 16, 'vec2<f16>': 4, 'vec4<f16>': 8,
  'vec2<u32>': 8, 'vec4<u32>': 16,
};

const WORKGROUP_VAR = /var<workgroup>\s*(\w+)\s*:\s*([^;]+);/g;
const ARRAY = /^array<\s*(.+?)\s*,\s*(\d+)u?\s*>$/;

/** Bytes of a workgroup variable of WGSL type `type`, or NaN for a type this reader does not size (the guard test refuses NaN). */
function typeBytes(type: string): number {
  const t = type.replace(/\s+/g, '');
  const arr = ARRAY.exec(t);
  const [elem, n] = arr ? [arr[1]!, Number(arr[2])] : [t, 1];
  const size = ELEMENT_BYTES[elem];
  return size === undefined ? NaN : Math.ceil((size * n) / 16) * 16;
}

/**
 * Read what `source` needs: storage bindings declared, `@workgroup_size` (1, 1, 1 where it has
 * none or not as literals: the compiler reports that), workgroup memory.
 */
export function kernelNeeds(source: string): KernelNeeds {
  const storageBuffers = declaredBindings(source).filter((k) => k !== 'uniform').length;
  const size = /@workgroup_size\(([^)]*)\)/.exec(source);
  const dims = (size?.[1] ?? '1').split(',').map((d) => Number(d.trim().replace(/u$/, '')) || 1);
  const workgroupSize: [number, number, number] = [dims[0]!, dims[1] ?? 1, dims[2] ?? 1];
  let workgroupBytes = 0;
  for (const m of source.matchAll(WORKGROUP_VAR)) workgroupBytes += typeBytes(m[2]!);
  return { storageBuffers, workgroupSize, workgroupBytes };
}

/** Each way kernel `name`'s source passes `limits`, as a sentence naming the limit; empty when it fits. */
export function kernelLimitProblems(name: string, source: string, limits: KernelLimits): string[] {
  const n = kernelNeeds(source);
  const [x, y, z] = n.workgroupSize;
  const out: string[] = [];
  const over = (what: string, need: number, limit: keyof KernelLimits) => {
    if (need > limits[limit]) out.push(`kernel "${name}" ${what} ${need}, but this GPU's ${limit} is ${limits[limit]}`);
  };
  over('binds storage buffers:', n.storageBuffers, 'maxStorageBuffersPerShaderStage');
  over('uses workgroup memory bytes:', n.workgroupBytes, 'maxComputeWorkgroupStorageSize');
  over('runs invocations per workgroup:', x * y * z, 'maxComputeInvocationsPerWorkgroup');
  over('has workgroup size x', x, 'maxComputeWorkgroupSizeX');
  over('has workgroup size y', y, 'maxComputeWorkgroupSizeY');
  over('has workgroup size z', z, 'maxComputeWorkgroupSizeZ');
  return out;
}

/**
 * Refuse a kernel that passes the device's limits, before WebGPU does with a validation error
 * far from its cause: every op is meant to take a fallback that fits (see `Backend.maxStorageBuffers`),
 * so this is a bug to report, not a setting to change.
 */
export class KernelLimitError extends Error {
  constructor(readonly kernel: string, readonly problems: string[]) {
    super(`${problems.join('; ')}. Every kernel should fit this GPU's limits: please report this as a bug, with the GPU's name.`);
    this.name = 'KernelLimitError';
  }
}

/** Throw a KernelLimitError when kernel `name`'s source passes `limits`. */
export function checkKernelLimits(name: string, source: string, limits: KernelLimits): void {
  const p = kernelLimitProblems(name, source, limits);
  if (p.length) throw new KernelLimitError(name, p);
}
