// Node entry to WebGPU through Dawn (the `webgpu` npm package); points Vulkan at SwiftShader when no GPU driver is set.
import { existsSync } from 'node:fs';
import { acquireGpu, type AcquireOptions, type Gpu, type LimitOverrides } from './gpu.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

let cached: Promise<Gpu> | null = null;
let instance: GPU | null = null;

/** One shared Dawn device for this process. */
export function nodeGpu(): Promise<Gpu> {
  return (cached ??= open());
}

/** Further devices, held for the process lifetime as the shared one is (Dawn crashes if they are collected mid-use). */
const limited = new Map<string, Promise<Gpu>>();

/** A Dawn device with lower limits than the adapter's (how a more limited GPU fares), one per set of limits. */
export function limitedNodeGpu(limits: LimitOverrides): Promise<Gpu> {
  const key = JSON.stringify(Object.entries(limits).sort());
  let g = limited.get(key);
  if (!g) limited.set(key, (g = nodeGpu().then(() => acquireGpu(instance!, limits, envOptions()))));
  return g;
}

async function open(): Promise<Gpu> {
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD) && process.env.LORASMITH_SYSTEM_VULKAN !== '1') {
    // Debian's Chromium ships SwiftShader's Vulkan driver; Dawn refuses Debian's lavapipe.
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }
  // Mesa's implicit device-select layer crashes Dawn at exit (and sometimes mid-run) under SwiftShader.
  process.env.NODEVICE_SELECT ??= '1';
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  // Held for the process lifetime: Dawn crashes if the instance is collected while its devices live.
  instance = create(['backend=vulkan']);
  return acquireGpu(instance, {}, envOptions());
}

/** LORASMITH_NO_F16=1 leaves shader-f16 off (the test command's second lavapipe run). */
function envOptions(): AcquireOptions {
  return { noF16: process.env.LORASMITH_NO_F16 === '1' };
}
