// Turning dropped files, folders and zips into images with captions; anything else is listed and skipped.
import { unzipSync } from 'fflate';

export interface Dropped {
  images: { name: string; bytes: ArrayBuffer }[];
  captions: Map<string, string>;
  skipped: { name: string; reason: string }[];
}

const IMAGE = /\.(png|jpe?g|webp)$/i;
const CHECKPOINT = /\.(safetensors|ckpt|pt|pth|bin)$/i;
const NOT_DATA = 'not an image (PNG, JPEG or WebP) or a caption (.txt)';
const stem = (n: string) => n.replace(/^.*\//, '').replace(/\.[^.]+$/, '');

async function entriesOf(item: FileSystemEntry): Promise<File[]> {
  if (item.isFile) return [await new Promise<File>((res, rej) => (item as FileSystemFileEntry).file(res, rej))];
  const reader = (item as FileSystemDirectoryEntry).createReader();
  const all: File[] = [];
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
    if (!batch.length) break;
    for (const e of batch) all.push(...(await entriesOf(e)));
  }
  return all;
}

/** Files from a drop event (folders walked) or a file input. */
export async function filesFrom(dt: DataTransfer | null, list?: FileList | null): Promise<File[]> {
  if (list) return [...list];
  if (!dt) return [];
  const entries = [...dt.items].map((i) => i.webkitGetAsEntry?.()).filter((e): e is FileSystemEntry => !!e);
  if (entries.length) return (await Promise.all(entries.map(entriesOf))).flat();
  return [...dt.files];
}

/** Sort files into images and captions (zips unpacked); the rest is reported. */
export async function sortFiles(files: File[]): Promise<Dropped> {
  const out: Dropped = { images: [], captions: new Map(), skipped: [] };
  const take = (name: string, bytes: ArrayBuffer) => {
    // Finder's resource forks and hidden files ride along in zips; they are not part of the dataset.
    if (/(^|\/)(__MACOSX\/|\.)/.test(name)) return;
    if (IMAGE.test(name)) out.images.push({ name: name.replace(/^.*\//, ''), bytes });
    else if (/\.txt$/i.test(name)) out.captions.set(stem(name), new TextDecoder().decode(bytes).trim());
    else if (!name.endsWith('/')) out.skipped.push({ name, reason: NOT_DATA });
  };
  for (const f of files) {
    // Only images, captions and zips are read: a 4 GB checkpoint dropped here by mistake is not loaded into memory.
    if (!IMAGE.test(f.name) && !/\.(txt|zip)$/i.test(f.name)) {
      if (!/(^|\/)(__MACOSX\/|\.)/.test(f.name)) out.skipped.push({ name: f.name, reason: CHECKPOINT.test(f.name) ? 'a model checkpoint: load it in step 1 (Base model)' : NOT_DATA });
      continue;
    }
    const bytes = await f.arrayBuffer();
    if (/\.zip$/i.test(f.name)) {
      try {
        for (const [n, b] of Object.entries(unzipSync(new Uint8Array(bytes)))) take(n, b.slice().buffer);
      } catch {
        out.skipped.push({ name: f.name, reason: 'the zip file is corrupt' });
      }
    } else take(f.name, bytes);
  }
  return out;
}

/**
 * The bundled sample photographs with their captions, fetched from `samples/manifest.json` beside
 * the page, as Files ready for `sortFiles`. A file that cannot be fetched raises an error naming it.
 */
export async function sampleFiles(base: string): Promise<File[]> {
  const at = (name: string) => new URL(name, base).href;
  const res = await fetch(at('manifest.json'));
  if (!res.ok) throw new Error(`the sample list ${at('manifest.json')} could not be loaded (HTTP ${res.status})`);
  const { files } = (await res.json()) as { files: string[] };
  return Promise.all(
    files.map(async (name) => {
      const r = await fetch(at(name));
      if (!r.ok) throw new Error(`the sample ${name} could not be loaded (HTTP ${r.status})`);
      return new File([await r.arrayBuffer()], name);
    }),
  );
}

export { stem };
