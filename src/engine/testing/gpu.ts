// The backend tests run on: Dawn in Node, the page's own WebGPU in Chromium. Never a mock.
import type { GpuBackend } from '../backend.js';
import { acquireGpu, type Gpu, type LimitOverrides } from '../gpu.js';

let gpu: Promise<Gpu> | null = null;
const limited = new Map<string, Promise<Gpu>>();

const inNode = () => typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined';

/** The shared real WebGPU device for this test process. */
export function testGpu(): Promise<Gpu> {
  if (!gpu) gpu = inNode() ? import(/* @vite-ignore */ '../node.js').then((m) => m.nodeGpu()) : acquireGpu();
  return gpu;
}

/** The GPU backend tests use. */
export async function testBackend(): Promise<GpuBackend> {
  return (await testGpu()).backend;
}

/** A second real device with lower limits (e.g. WebGPU's default 128 MiB binding size), one per set of limits. */
export function testGpuWithLimits(limits: LimitOverrides): Promise<Gpu> {
  const key = JSON.stringify(Object.entries(limits).sort());
  let g = limited.get(key);
  if (!g) limited.set(key, (g = inNode() ? import(/* @vite-ignore */ '../node.js').then((m) => m.limitedNodeGpu(limits)) : acquireGpu(navigator.gpu, limits)));
  return g;
}
