// A diffusers repository served over HTTP (the bundled tiny demo, the CLIP tokenizer), for the browser; node-repo.ts is the folder one.
import { urlSource } from './safetensors.js';
import type { RepoFiles } from './pipeline.js';

/** The repository at `base` (a URL, trailing slash optional); `name` is how messages call it. */
export function httpRepo(base: string, name: string): RepoFiles {
  const url = (p: string) => `${base.replace(/\/$/, '')}/${p}`;
  return {
    name,
    open: (p) => urlSource(url(p)),
    text: async (p) => {
      const r = await fetch(url(p));
      if (!r.ok) throw new Error(`${url(p)}: HTTP ${r.status}`);
      return r.text();
    },
  };
}
