// Turning dropped files, folders and zips into images with captions, by path (kohya's `N_concept` folders read); anything else is listed and skipped.
import { unzipSync } from 'fflate';
import { captionOf, folderOf, isHiddenPath, pairFiles, type SetFile, type Skip } from '../protocol/index.js';

/** A file as picked or dropped, with its path inside what was dropped (`train/10_cat/1.png`; a loose file's name). */
export interface Picked {
  path: string;
  file: Blob;
}

/** A dropped set sorted: images by path with their captions, captions whose image is not in it, and what was skipped. */
export interface Dropped {
  images: { path: string; bytes: ArrayBuffer; caption: string; note?: string; repeats?: number }[];
  /** Captions without their image in this drop (the image may already be in the dataset). */
  orphanCaptions: { path: string; text: string }[];
  skipped: Skip[];
  /** Folder names not read as repeat counts, in words. */
  notes: string[];
}

/** A File from a file input (a chosen folder gives its relative path) or a drop without folder entries. */
export const picked = (f: File): Picked => ({ path: f.webkitRelativePath || f.name, file: f });

async function entriesOf(item: FileSystemEntry): Promise<Picked[]> {
  const path = item.fullPath.replace(/^\//, '') || item.name;
  if (item.isFile) return [{ path, file: await new Promise<File>((res, rej) => (item as FileSystemFileEntry).file(res, rej)) }];
  const reader = (item as FileSystemDirectoryEntry).createReader();
  const all: Picked[] = [];
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
    if (!batch.length) break;
    for (const e of batch) all.push(...(await entriesOf(e)));
  }
  return all;
}

/** Files from a drop event (folders walked, paths kept) or a file input. */
export async function filesFrom(dt: DataTransfer | null, list?: FileList | null): Promise<Picked[]> {
  if (list) return [...list].map(picked);
  if (!dt) return [];
  const entries = [...dt.items].map((i) => i.webkitGetAsEntry?.()).filter((e): e is FileSystemEntry => !!e);
  if (entries.length) return (await Promise.all(entries.map(entriesOf))).flat();
  return [...dt.files].map(picked);
}

/**
 * Sort files into images and captions paired by path (zips unpacked, their entries under the zip's
 * folder); the rest is reported once each. Only images, captions and zips are read: a 4 GB checkpoint
 * dropped here by mistake is not loaded into memory.
 */
export async function sortFiles(files: readonly Picked[]): Promise<Dropped> {
  const set: SetFile[] = [];
  const read = new Map<string, () => Promise<ArrayBuffer>>();
  const skipped: Skip[] = [];
  const add = (path: string, size: number, bytes: () => Promise<ArrayBuffer>) => {
    set.push({ path, size });
    read.set(path, bytes);
  };
  for (const { path, file } of files) {
    if (isHiddenPath(path)) continue;
    if (!/\.zip$/i.test(path)) {
      add(path, file.size, () => file.arrayBuffer());
      continue;
    }
    try {
      const at = folderOf(path);
      for (const [n, b] of Object.entries(unzipSync(new Uint8Array(await file.arrayBuffer())))) add(at ? `${at}/${n}` : n, b.byteLength, async () => b.slice().buffer);
    } catch {
      skipped.push({ path, reason: 'the zip file is corrupt' });
    }
  }
  const p = pairFiles(set);
  const text = async (path: string | null) => (path ? new TextDecoder().decode(await read.get(path)!()) : null);
  const images: Dropped['images'] = [];
  for (const img of p.images) {
    const c = captionOf(img, await text(img.captionPath));
    images.push({ path: img.path, bytes: await read.get(img.path)!(), caption: c.caption, ...(c.note ? { note: c.note } : {}), ...(img.repeats !== null ? { repeats: img.repeats } : {}) });
  }
  const orphanCaptions = await Promise.all(p.orphanCaptions.map(async (path) => ({ path, text: (await text(path))!.trim() })));
  return { images, orphanCaptions, skipped: [...skipped, ...p.skipped], notes: p.notes };
}

/**
 * The bundled sample photographs with their captions, fetched from `samples/manifest.json` beside
 * the page, as files ready for `sortFiles`. A file that cannot be fetched raises an error naming it.
 */
export async function samplePhotos(base: string): Promise<Picked[]> {
  const at = (name: string) => new URL(name, base).href;
  const res = await fetch(at('manifest.json'));
  if (!res.ok) throw new Error(`the sample photo list ${at('manifest.json')} could not be loaded (HTTP ${res.status})`);
  const { files } = (await res.json()) as { files: string[] };
  return Promise.all(
    files.map(async (name) => {
      const r = await fetch(at(name));
      if (!r.ok) throw new Error(`the sample photo ${name} could not be loaded (HTTP ${r.status})`);
      return picked(new File([await r.arrayBuffer()], name));
    }),
  );
}
