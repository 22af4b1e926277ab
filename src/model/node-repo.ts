// A diffusers repository in a local folder, for Node (CLI, tests).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileSource } from './node-source.js';
import type { RepoFiles } from './pipeline.js';

export function folderRepo(dir: string): RepoFiles {
  return { name: dir, open: (p) => fileSource(join(dir, p)), text: (p) => readFile(join(dir, p), 'utf8') };
}
