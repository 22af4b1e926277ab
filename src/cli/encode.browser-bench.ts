// The encode bench in headless Chromium (`npm run bench:browser`): the page's figures for `npm run bench -- --encode`, one JSON line per run.
import { it } from 'vitest';
import { testBackend } from '../engine/testing/gpu.js';
import { httpRepo } from '../model/http-repo.js';
import { loadDiffusers } from '../model/pipeline.js';
import { Rng } from '../training/rng.js';
import { benchEncode } from './bench-encode.js';

/** Runs of the bench in one page: two, so a reader sees how far one run's figures are from the next. */
const RUNS = 2;

it('encodes a tiny training step: µs per dispatch with the bind group cache on, off, and replayed', async () => {
  const b = await testBackend();
  // The bundled demo model, as the page loads it (Vite serves public/ at the root).
  const pipeline = await loadDiffusers(b, httpRepo(`${location.origin}/tiny/`, 'tiny'));
  const noise = new Rng(7).normals(64 * 64 * 4);
  const image = { width: 64, height: 64, data: Uint8ClampedArray.from(noise, (v) => 128 + 40 * v) };
  const items = [{ name: 'noise.png', image, caption: 'a photo of a cat' }];
  for (let i = 0; i < RUNS; i++) console.log(`ENCODE ${JSON.stringify({ where: 'chromium', ...(await benchEncode(b, 5, { pipeline, items })) })}`);
});
