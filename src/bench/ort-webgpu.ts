// ONNX Runtime Web's WebGPU execution provider on our own GPUDevice in Node (Dawn): the shims it needs there.
import type * as Ort from 'onnxruntime-web';

/** The ORT module, ready to create WebGPU sessions on `device`. */
export interface OrtOnDevice {
  ort: typeof Ort;
  /** Session options that put every node on the WebGPU EP with our device (creation fails rather than fall back to CPU). */
  sessionOptions: Ort.InferenceSession.SessionOptions;
}

let keepAlive: ReturnType<typeof setInterval> | null = null;

/**
 * Load ORT's WebGPU build and point it at `device`. Three things differ from a browser, each found by
 * running it: ORT checks `navigator.gpu` exists (Node 20 has no navigator); its wasm heap is a
 * SharedArrayBuffer, which Dawn's queue.writeBuffer refuses ("Invalid argument"), so views of it are
 * copied first; and Node drains V8's background work (the ~20 MB wasm's optimizing recompile, minutes
 * on two loaded cores) whenever its event loop runs out of handles, which freezes every Dawn promise
 * meanwhile, so a timer handle stays open until `releaseOrt`.
 */
export async function ortOnDevice(device: GPUDevice, adapter: GPUAdapter): Promise<OrtOnDevice> {
  keepAlive ??= setInterval(() => {}, 1 << 30);
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (!g.navigator?.gpu) {
    const gpu = { requestAdapter: () => Promise.resolve(adapter), getPreferredCanvasFormat: () => 'rgba8unorm', wgslLanguageFeatures: new Set() };
    if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
    else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });
  }
  copySharedWrites(device.queue);
  // The WebGPU build directly (the package's "node" export is the CPU-only one); a specifier Vite cannot see.
  const specifier = 'onnxruntime-web/webgpu';
  const ort = (await import(/* @vite-ignore */ specifier)) as typeof Ort;
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  const ep = { name: 'webgpu', device } as unknown as Ort.InferenceSession.ExecutionProviderConfig;
  return { ort, sessionOptions: { executionProviders: [ep], extra: { session: { disable_cpu_ep_fallback: '1' } } } };
}

/** Let the process exit once ORT is done. */
export function releaseOrt(): void {
  if (keepAlive) clearInterval(keepAlive);
  keepAlive = null;
}

type WriteBuffer = GPUQueue['writeBuffer'];

/** Wrap queue.writeBuffer once so that views of a SharedArrayBuffer are written from a copy. */
function copySharedWrites(queue: GPUQueue): void {
  const q = queue as GPUQueue & { sharedCopy?: true };
  if (q.sharedCopy) return;
  const write = queue.writeBuffer.bind(queue) as (b: GPUBuffer, o: number, d: ArrayBufferView, dOff?: number, size?: number) => void;
  const wrapped = (b: GPUBuffer, o: number, d: ArrayBufferView, dOff?: number, size?: number): void => {
    if (typeof SharedArrayBuffer === 'undefined' || !(d.buffer instanceof SharedArrayBuffer)) return write(b, o, d, dOff, size);
    // Offsets and sizes count elements of a typed array, bytes of a DataView.
    const per = 'BYTES_PER_ELEMENT' in d ? (d as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT : 1;
    const start = d.byteOffset + (dOff ?? 0) * per;
    const bytes = size === undefined ? d.byteLength - (dOff ?? 0) * per : size * per;
    write(b, o, new Uint8Array(d.buffer, start, bytes).slice());
  };
  q.writeBuffer = wrapped as unknown as WriteBuffer;
  q.sharedCopy = true;
}
