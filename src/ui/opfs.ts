// The page's folder in the origin private file system (OPFS): files only this site sees, on this machine's disk, never uploaded.

/** The folder everything kept for recovering a run lives under (images, the run's state). */
export const RECOVERY_DIR = 'lorasmith-recovery';

/** Why OPFS is not there, in words; null when it is. */
export function opfsMissing(storage: StorageManager | undefined = globalThis.navigator?.storage): string | null {
  return typeof storage?.getDirectory === 'function' ? null : 'this browser has no origin private file system (navigator.storage.getDirectory)';
}

/** A folder under the recovery folder (`images`), made when missing; `create: false` gives null when it is not there. */
export async function folder(path: string[], create = true): Promise<FileSystemDirectoryHandle | null> {
  let dir = await navigator.storage.getDirectory();
  try {
    for (const name of [RECOVERY_DIR, ...path]) dir = await dir.getDirectoryHandle(name, { create });
    return dir;
  } catch (e) {
    if (!create && e instanceof DOMException && e.name === 'NotFoundError') return null;
    throw e;
  }
}

/** Write a whole file, replacing what was there (the browser swaps it in only once `close` has written everything). */
export async function writeFile(dir: FileSystemDirectoryHandle, name: string, data: Uint8Array | string): Promise<void> {
  const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
  try {
    await w.write(typeof data === 'string' ? data : (data as Uint8Array<ArrayBuffer>));
    await w.close();
  } catch (e) {
    await w.abort().catch(() => {});
    throw e;
  }
}

/** A file's bytes, or null when it is not there. */
export async function readFile(dir: FileSystemDirectoryHandle, name: string): Promise<Uint8Array | null> {
  try {
    return new Uint8Array(await (await (await dir.getFileHandle(name)).getFile()).arrayBuffer());
  } catch (e) {
    if (e instanceof DOMException && e.name === 'NotFoundError') return null;
    throw e;
  }
}

/** A JSON file's value, or null when it is not there or not JSON (a damaged file counts as none). */
export async function readJson<T>(dir: FileSystemDirectoryHandle, name: string): Promise<T | null> {
  const b = await readFile(dir, name);
  if (!b) return null;
  try {
    return JSON.parse(new TextDecoder().decode(b)) as T;
  } catch {
    return null;
  }
}

/** The names of a folder's files with their sizes. */
export async function listFiles(dir: FileSystemDirectoryHandle): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const [name, h] of (dir as FileSystemDirectoryHandle & { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries())
    if (h.kind === 'file') out.set(name, (await (h as FileSystemFileHandle).getFile()).size);
  return out;
}

/** Remove a file or folder (with what is in it); nothing happens when it is not there. */
export async function remove(dir: FileSystemDirectoryHandle, name: string): Promise<void> {
  try {
    await dir.removeEntry(name, { recursive: true });
  } catch (e) {
    if (!(e instanceof DOMException && e.name === 'NotFoundError')) throw e;
  }
}

/** An error in words for a message to the person (quota exceeded, no OPFS). */
export const why = (e: unknown) => (e instanceof Error ? e.message : String(e));
