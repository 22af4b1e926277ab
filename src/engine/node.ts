// Node entry to WebGPU through Dawn (the `webgpu` npm package); points Vulkan at SwiftShader when no GPU driver is set.
import { existsSync } from 'node:fs';
import { acquireGpu, type Gpu } from './gpu.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

let cached: Promise<Gpu> | null = null;
let instance: GPU | null = null;

/** One shared Dawn device for this process. */
export function nodeGpu(): Promise<Gpu> {
  return (cached ??= open());
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
  return acquireGpu(instance);
}
