// Per-part load progress (U-Net, text encoder, VAE) from the model layer's stream of stages, for the page's load display.
import type { LoadProgress as PartLoadProgress } from '../model/pipeline.js';
import type { ComponentProgress, LoadProgress } from '../protocol/index.js';

/** The parts in the order the model layer loads them, with the stage names it reports. */
const PARTS = ['U-Net', 'text encoder', 'VAE'] as const;
/** A diffusers repository's folder for each part. */
const FOLDERS: Record<string, (typeof PARTS)[number]> = { unet: 'U-Net', text_encoder: 'text encoder', vae: 'VAE' };
/** Single-file (LDM) key prefixes of each part. */
const PREFIXES: [string, (typeof PARTS)[number]][] = [['model.diffusion_model.', 'U-Net'], ['cond_stage_model.', 'text encoder'], ['first_stage_model.', 'VAE']];

/** The part a single file's tensor belongs to, or null (EMA copies, position ids of other layouts, extras). */
export function partOfKey(key: string): string | null {
  return PREFIXES.find(([p]) => key.startsWith(p))?.[1] ?? null;
}

/**
 * Turns the model layer's progress (one running byte count over all parts, a stage naming the part,
 * and hub downloads named by file path) into per-part bytes. A part's total is what it is known to
 * be (its weight file's size, or its tensors in a single file's header) until it finishes, when its
 * loaded bytes are exact; the last part's total is what remains of the overall total.
 */
export class LoadTracker {
  private parts: ComponentProgress[] = PARTS.map((name) => ({ name, loadedBytes: 0, totalBytes: 0, done: false }));
  private current = -1;
  private partStart = 0;
  private lastLoaded = 0;

  /** What is known of a part's size before it loads (a weight file's size, a header's sum). */
  expect(part: string, bytes: number): void {
    const p = this.parts.find((x) => x.name === part);
    if (p && !p.done) p.totalBytes = bytes;
  }

  /** The size of a diffusers file that was opened; weight files give their part's size. */
  opened(path: string, bytes: number): void {
    const part = FOLDERS[path.split('/')[0] ?? ''];
    if (part && /\.safetensors$/.test(path)) this.expect(part, bytes);
  }

  /** The model layer's report as the page gets it: the same figures plus every part's. */
  update(p: PartLoadProgress): LoadProgress {
    const i = this.parts.findIndex((x) => x.name === p.stage);
    if (i >= 0) this.uploaded(i, p);
    else this.downloaded(p);
    return { ...p, components: this.snapshot() };
  }

  /** After a successful load: every part is on the GPU, with its exact bytes. */
  finished(): ComponentProgress[] {
    for (let j = 0; j < this.parts.length; j++) this.finish(j);
    return this.snapshot();
  }

  private snapshot(): ComponentProgress[] {
    return this.parts.map((x) => ({ ...x, ...(x.downloaded ? { downloaded: { ...x.downloaded } } : {}) }));
  }

  private uploaded(i: number, p: PartLoadProgress): void {
    if (i !== this.current) {
      for (let j = Math.max(0, this.current); j < i; j++) this.finish(j);
      this.partStart = this.lastLoaded;
      this.current = i;
    }
    this.lastLoaded = p.loadedBytes;
    const part = this.parts[i]!;
    part.loadedBytes = p.loadedBytes - this.partStart;
    if (i === this.parts.length - 1 && p.totalBytes) part.totalBytes = p.totalBytes - this.partStart;
    if (part.totalBytes < part.loadedBytes) part.totalBytes = 0;
    if (p.totalBytes && p.loadedBytes >= p.totalBytes) for (let j = i; j < this.parts.length; j++) this.finish(j);
  }

  private finish(j: number): void {
    const part = this.parts[j]!;
    part.totalBytes = part.loadedBytes;
    part.done = true;
  }

  private downloaded(p: PartLoadProgress): void {
    const m = /^(\w+)\/[^ ]+\.safetensors \(/.exec(p.stage);
    const part = m && this.parts.find((x) => x.name === FOLDERS[m[1]!]);
    if (!part) return;
    part.downloaded = { loadedBytes: p.loadedBytes, totalBytes: p.totalBytes };
    if (p.totalBytes && !part.totalBytes) part.totalBytes = p.totalBytes;
  }
}
