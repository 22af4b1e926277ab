// The benchmarks that run in headless Chromium (`npm run bench:browser`): kept apart from the test projects, so the test command never runs them.
import { defineConfig } from 'vitest/config';
import { chromiumProvider } from './vitest.config.js';

export default defineConfig({
  test: {
    name: 'bench-browser',
    include: ['src/cli/*.browser-bench.ts'],
    testTimeout: 30 * 60_000,
    fileParallelism: false,
    browser: { enabled: true, headless: true, provider: chromiumProvider(), instances: [{ browser: 'chromium' }] },
  },
});
