// Test helpers for training: the tiny pipeline and the bundled sample photos, loaded in Node.
import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend } from '../engine/backend.js';
import { folderRepo } from '../model/node-repo.js';
import { loadDiffusers, type Pipeline } from '../model/pipeline.js';
import { decodeImageNode } from './decode-node.js';
import type { TrainItem } from './trainer.js';

export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

export function tinyPipeline(b: Backend): Promise<Pipeline> {
  return loadDiffusers(b, folderRepo(`${ROOT}/public/tiny`));
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
