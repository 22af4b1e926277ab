// Two projects run the same tests: Node with Dawn, and headless Chromium (both real WebGPU, SwiftShader here).
import { existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';
import { playwright } from '@vitest/browser-playwright';

const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// Dawn reads this when the worker process loads it; Debian's Chromium ships SwiftShader's Vulkan driver.
const icd = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!process.env.VK_ICD_FILENAMES && existsSync(icd)) process.env.VK_ICD_FILENAMES = icd;
// Mesa's implicit device-select Vulkan layer crashes Dawn under SwiftShader.
process.env.NODEVICE_SELECT ??= '1';

/** Headless Chromium with WebGPU on (SwiftShader here): the browser tests' and the browser benchmark's (vitest.bench.config.ts) provider. */
export function chromiumProvider() {
  return playwright({
    launchOptions: {
      executablePath: chromium,
      args: ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--no-sandbox', '--disable-gpu-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    },
  });
}

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'node',
          include: ['src/**/*.test.ts'],
          environment: 'node',
          pool: 'forks',
          // one Dawn device per process, tests run one file at a time on 2 cores
          fileParallelism: false,
        },
      },
      {
        extends: true,
        // Pre-bundled up front: found mid-run, Vite reloads the page and the first .test.tsx run fails to import.
        optimizeDeps: { include: ['react', 'react-dom/client', 'react/jsx-dev-runtime', 'zustand', 'zustand/middleware', 'zustand/react/shallow', 'comlink', 'zod'] },
        test: {
          name: 'browser',
          // React components need a DOM: their tests (.test.tsx) run only here.
          include: ['src/engine/**/*.test.ts', 'src/ui/**/*.test.tsx'],
          exclude: ['src/**/*.node.test.ts'],
          fileParallelism: false,
          browser: {
            enabled: true,
            headless: true,
            provider: chromiumProvider(),
            instances: [{ browser: 'chromium' }],
          },
        },
      },
    ],
  },
});
