// A diffusers repository in a local folder, for Node (CLI, tests).
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileSource } from './node-source.js';
import type { RepoFiles } from './pipeline.js';

/** A diffusers repository in a folder; `locate` says which weight variants are there. */
export function folderRepo(dir: string): RepoFiles {
  return {
    name: dir,
    open: (p) => fileSource(join(dir, p)),
    text: (p) =>
      readFile(join(dir, p), 'utf8').catch((e: NodeJS.ErrnoException) => {
        const why = e.code === 'ENOENT' ? 'is missing' : e.code === 'EISDIR' ? 'is a folder, not a file' : `cannot be read (${e.code ?? e.message})`;
        throw new Error(`${dir}: ${p} ${why}; a diffusers SD 1.x folder has model_index.json, unet/, text_encoder/, vae/ and tokenizer/`);
      }),
    locate: async (p) => ((await stat(join(dir, p)).then((s) => s.isFile(), () => false)) ? 'local' : 'missing'),
  };
}
