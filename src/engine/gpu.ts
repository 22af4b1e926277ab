// Device acquisition: ask for the adapter's real limits and report what we got, in a page, a worker or Node.
import { GpuBackend } from './backend.js';
import { probeSubgroups } from './subgroups.js';

/** What the user's GPU is, as far as WebGPU says. */
export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallback: boolean;
  features: string[];
  limits: {
    maxBufferSize: number;
    maxStorageBufferBindingSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxStorageBuffersPerShaderStage: number;
  };
}

/** WebGPU is missing or the adapter was refused; the message says what to do. */
export class WebGpuUnavailableError extends Error {
  constructor(reason: string) {
    super(
      `WebGPU is not available: ${reason}. Use a recent Chrome or Edge (113+), or Firefox 141+ / Safari 26+ ` +
        'with WebGPU enabled; on Linux Chrome may need chrome://flags/#enable-unsafe-webgpu and Vulkan drivers.',
    );
    this.name = 'WebGpuUnavailableError';
  }
}

/** A ready device with its backend and a report of the adapter. */
export interface Gpu {
  device: GPUDevice;
  backend: GpuBackend;
  adapter: AdapterReport;
  /** Held for the device's lifetime: Dawn in Node crashes if the adapter is collected while its device lives. */
  gpuAdapter: GPUAdapter;
  /** Resolves if the device is lost (driver reset, tab backgrounded too long); the reason says which. */
  lost: Promise<GPUDeviceLostInfo>;
}

const LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxStorageBuffersPerShaderStage',
] as const;

/** Limits to ask for below the adapter's own, to run as a more limited GPU would (tests of WebGPU's defaults). */
export type LimitOverrides = Partial<Record<(typeof LIMITS)[number], number>>;

/** How to ask for the device. */
export interface AcquireOptions {
  /** Leave `shader-f16` off even where the adapter has it (the f32 path on an f16-capable adapter, as tests run it). */
  noF16?: boolean;
  /** Leave `subgroups` off even where the adapter has it (the kernels' workgroup-memory path, as tests run it). */
  noSubgroups?: boolean;
}

/**
 * Request an adapter and a device with the adapter's own limits (not the defaults, which cap buffers
 * at 128 MiB), or with `limits` where given.
 */
export async function acquireGpu(gpu: GPU | undefined = globalThis.navigator?.gpu, limits: LimitOverrides = {}, opts: AcquireOptions = {}): Promise<Gpu> {
  if (!gpu) throw new WebGpuUnavailableError('navigator.gpu is undefined in this browser');
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new WebGpuUnavailableError('no GPU adapter was offered (blocklisted driver or disabled GPU)');
  const requiredLimits: Record<string, number> = {};
  for (const k of LIMITS) requiredLimits[k] = Math.min(limits[k] ?? Infinity, adapter.limits[k]);
  const wanted: GPUFeatureName[] = ['timestamp-query', ...(opts.noF16 ? [] : (['shader-f16'] as const)), ...(opts.noSubgroups ? [] : (['subgroups'] as const))];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const info = adapter.info ?? ({} as GPUAdapterInfo);
  const l = device.limits;
  const report: AdapterReport = {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    isFallback: Boolean((info as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter),
    features: [...device.features].map(String).sort(),
    limits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  };
  const backend = new GpuBackend(device);
  // The pool hands a repeated step the same buffers (see BufferPool), so its bind groups are found again.
  backend.cacheBindGroups = true;
  backend.subgroups = await probeSubgroups(device, info);
  return { device, backend, adapter: report, gpuAdapter: adapter, lost: device.lost };
}
