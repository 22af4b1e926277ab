// The backend tests run on: Dawn in Node, the page's own WebGPU in Chromium. Never a mock.
import type { GpuBackend } from '../backend.js';
import { acquireGpu, type Gpu } from '../gpu.js';

let gpu: Promise<Gpu> | null = null;

/** The shared real WebGPU device for this test process. */
export function testGpu(): Promise<Gpu> {
  if (!gpu) {
    const inNode = typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined';
    gpu = inNode ? import(/* @vite-ignore */ '../node.js').then((m) => m.nodeGpu()) : acquireGpu();
  }
  return gpu;
}

/** The GPU backend tests use. */
export async function testBackend(): Promise<GpuBackend> {
  return (await testGpu()).backend;
}
