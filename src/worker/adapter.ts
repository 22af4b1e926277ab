// The worker's GPU adapter as the page is told of it, and whether it is a CPU emulation.
import type { AdapterReport } from '../engine/gpu.js';
import type { AdapterInfo } from '../protocol/index.js';

/** An adapter that computes on the CPU (SwiftShader, llvmpipe, lavapipe, or one the browser calls a fallback). */
export function isSoftwareAdapter(a: AdapterReport): boolean {
  return a.isFallback || /swiftshader|llvmpipe|lavapipe|software/i.test(`${a.description} ${a.vendor} ${a.architecture} ${a.device}`);
}

/** The adapter's report with that verdict. */
export function adapterInfo(a: AdapterReport): AdapterInfo {
  return { ...a, software: isSoftwareAdapter(a) };
}
