// Test helpers for training: the tiny pipeline and the bundled sample photos, loaded in Node.
import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll } from 'vitest';
import type { Backend, GpuBackend } from '../engine/backend.js';
import { testBackend } from '../engine/testing/gpu.js';
import { folderRepo } from '../model/node-repo.js';
import { loadDiffusers, type Pipeline } from '../model/pipeline.js';
import { decodeImageNode } from './decode-node.js';
import type { TrainItem } from './trainer.js';

export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

export function tinyPipeline(b: Backend): Promise<Pipeline> {
  return loadDiffusers(b, folderRepo(`${ROOT}/public/tiny`));
}

/** The test backend and the tiny pipeline on it, as a test file's tests see them once `useTinyPipeline`'s hook has run. */
export interface TinyFixture {
  readonly backend: GpuBackend;
  readonly pipeline: Pipeline;
}

/**
 * Load the tiny pipeline on the test backend once, before a test file's tests (vitest's `beforeAll`, up to
 * 10 minutes: a cold SwiftShader compiles its kernels). Call at module level; read the fields inside tests.
 */
export function useTinyPipeline(): TinyFixture {
  const fixture = {} as { backend: GpuBackend; pipeline: Pipeline };
  beforeAll(async () => {
    fixture.backend = await testBackend();
    fixture.pipeline = await tinyPipeline(fixture.backend);
  }, 10 * 60_000);
  return fixture;
}

/** The bundled sample photographs with their captions. */
export function sampleItems(limit = Infinity): TrainItem[] {
  const dir = `${ROOT}/public/samples`;
  return readdirSync(dir)
    .filter((f) => /\.(png|jpe?g)$/.test(f))
    .sort()
    .slice(0, limit)
    .map((f) => ({ name: f, image: decodeImageNode(f, readFileSync(`${dir}/${f}`)), caption: readFileSync(`${dir}/${f.replace(/\.\w+$/, '.txt')}`, 'utf8').trim() }));
}
