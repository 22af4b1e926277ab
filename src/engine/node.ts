// Node entry to WebGPU through Dawn (the `webgpu` npm package); points Vulkan at SwiftShader when no GPU driver is set.
import { existsSync } from 'node:fs';
import { acquireGpu, type AcquireOptions, type Gpu, type LimitOverrides } from './gpu.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

let cached: Promise<Gpu> | null = null;
let instance: Promise<GPU> | null = null;
/** Devices that were lost, held for the process lifetime: Dawn crashes if a device or its adapter is collected while it may still be referenced. */
const retired: Gpu[] = [];

/**
 * One shared Dawn device for this process. Once that device is lost (destroyed, a driver reset) the
 * next call opens a fresh one on the same Dawn instance, so a long-lived process can recover.
 */
export function nodeGpu(): Promise<Gpu> {
  if (cached) return cached;
  const p = dawn().then((gpu) => acquireGpu(gpu, {}, envOptions()));
  cached = p;
  const forget = () => {
    if (cached === p) cached = null;
  };
  p.then(
    (g) =>
      void g.lost.then(() => {
        retired.push(g);
        forget();
      }),
    forget,
  );
  return p;
}

/** Further devices, held for the process lifetime as the shared one is (Dawn crashes if they are collected mid-use). */
const limited = new Map<string, Promise<Gpu>>();

/** A Dawn device with lower limits than the adapter's (how a more limited GPU fares), one per set of limits. */
export function limitedNodeGpu(limits: LimitOverrides): Promise<Gpu> {
  const key = JSON.stringify(Object.entries(limits).sort());
  let g = limited.get(key);
  if (!g) limited.set(key, (g = dawn().then((gpu) => acquireGpu(gpu, limits, envOptions()))));
  return g;
}

/** The process's Dawn instance, created on first use. */
function dawn(): Promise<GPU> {
  return (instance ??= createInstance());
}

async function createInstance(): Promise<GPU> {
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD) && process.env.LORASMITH_SYSTEM_VULKAN !== '1') {
    // Debian's Chromium ships SwiftShader's Vulkan driver; Dawn refuses Debian's lavapipe.
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }
  // Mesa's implicit device-select layer crashes Dawn at exit (and sometimes mid-run) under SwiftShader.
  process.env.NODEVICE_SELECT ??= '1';
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  // Held for the process lifetime (module scope): Dawn crashes if the instance is collected while its devices live.
  return create(['backend=vulkan']);
}

/** LORASMITH_NO_F16=1 leaves shader-f16 off (the test command's second lavapipe run), LORASMITH_NO_SUBGROUPS=1 subgroups. */
function envOptions(): AcquireOptions {
  return { noF16: process.env.LORASMITH_NO_F16 === '1', noSubgroups: process.env.LORASMITH_NO_SUBGROUPS === '1' };
}
