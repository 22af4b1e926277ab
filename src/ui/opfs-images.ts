// The images (with captions and repeats) of the last run started, kept in OPFS so that a run can go on after a reload, a closed tab or a lost GPU.
import { folder, listFiles, opfsMissing, readFile, readJson, remove, writeFile } from './opfs.js';

/** One image as the run trained on it. */
export interface KeptImage {
  /** Its path in what was dropped (`train/10_cat/1.png`): its identity in the dataset. */
  name: string;
  bytes: ArrayBuffer;
  caption: string;
  repeats?: number;
}

/** The manifest's line for an image: its bytes are in the file named by their SHA-256. */
interface Line {
  name: string;
  file: string;
  caption: string;
  repeats?: number;
}

const MANIFEST = 'images.json';
const IMAGES = ['images'];

async function sha256(bytes: ArrayBuffer): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Keep these images as the ones to continue with (replacing the kept set). Files already kept with
 * the same bytes are not written again, so starting again on the same images costs only their
 * hashes; the manifest is written last, so a crash mid-way leaves the earlier set readable.
 */
export async function keepImages(images: readonly KeptImage[]): Promise<void> {
  const missing = opfsMissing();
  if (missing) throw new Error(missing);
  const dir = (await folder(IMAGES))!;
  const have = await listFiles(dir);
  const lines: Line[] = [];
  for (const im of images) {
    const file = await sha256(im.bytes);
    if (have.get(file) !== im.bytes.byteLength) await writeFile(dir, file, new Uint8Array(im.bytes));
    have.set(file, im.bytes.byteLength);
    lines.push({ name: im.name, file, caption: im.caption, ...(im.repeats !== undefined ? { repeats: im.repeats } : {}) });
  }
  await writeFile(dir, MANIFEST, JSON.stringify(lines));
  const used = new Set([MANIFEST, ...lines.map((l) => l.file)]);
  for (const name of have.keys()) if (!used.has(name)) await remove(dir, name);
}

/** The kept images in their order, or null when none are kept (or a file of the set is gone). */
export async function keptImages(): Promise<KeptImage[] | null> {
  if (opfsMissing()) return null;
  const dir = await folder(IMAGES, false);
  const lines = dir && (await readJson<Line[]>(dir, MANIFEST));
  if (!dir || !Array.isArray(lines)) return null;
  const out: KeptImage[] = [];
  for (const l of lines) {
    const b = await readFile(dir, l.file);
    if (!b) return null;
    out.push({ name: l.name, bytes: b.buffer as ArrayBuffer, caption: l.caption, ...(l.repeats !== undefined ? { repeats: l.repeats } : {}) });
  }
  return out;
}

/** How many images are kept and their bytes on disk (0, 0 when none). */
export async function keptImagesSize(): Promise<{ images: number; bytes: number }> {
  if (opfsMissing()) return { images: 0, bytes: 0 };
  const dir = await folder(IMAGES, false);
  const lines = dir && (await readJson<Line[]>(dir, MANIFEST));
  if (!dir || !Array.isArray(lines)) return { images: 0, bytes: 0 };
  const files = await listFiles(dir);
  const bytes = [...files].reduce((a, [n, s]) => (n === MANIFEST ? a : a + s), 0);
  return { images: lines.length, bytes };
}

/** Delete every kept image from this browser. */
export async function deleteKeptImages(): Promise<void> {
  if (opfsMissing()) return;
  const root = await folder([], false);
  if (root) await remove(root, IMAGES[0]!);
}
