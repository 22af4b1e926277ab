// The latest saved LoRA kept in IndexedDB, so a closed tab or a crashed worker loses at most one save interval.
const DB = 'lorasmith';
const STORE = 'checkpoints';
const KEY = 'latest';

export interface SavedLora {
  bytes: Uint8Array;
  step: number;
  runName: string;
  savedAt: number;
  /** Trained on the demo model (random weights): for trying the app only. */
  demo?: boolean;
}

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(DB, 1);
    r.onupgradeneeded = () => r.result.createObjectStore(STORE);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new Error('IndexedDB is unavailable'));
  });
}

async function tx<T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await open();
  try {
    return await new Promise<T>((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const req = f(t.objectStore(STORE));
      t.oncomplete = () => resolve(req.result);
      t.onerror = () => reject(t.error ?? new Error('IndexedDB transaction failed'));
      t.onabort = () => reject(t.error ?? new Error('IndexedDB transaction aborted (storage full?)'));
    });
  } finally {
    db.close();
  }
}

/**
 * Keep this LoRA as the one to recover (replacing the previous). An untrained step-0 LoRA never
 * replaces a kept one. Failures (private mode, full disk) are reported, not thrown.
 */
export async function keepLora(l: SavedLora): Promise<string | null> {
  if (!(l.step > 0)) return null;
  try {
    await tx('readwrite', (s) => s.put(l, KEY));
    return null;
  } catch (e) {
    return `The LoRA could not be kept in browser storage (${e instanceof Error ? e.message : String(e)}); download it to keep it`;
  }
}

/** The LoRA kept by an earlier session, if any. */
export async function recoverLora(): Promise<SavedLora | null> {
  try {
    return ((await tx('readonly', (s) => s.get(KEY))) as SavedLora | undefined) ?? null;
  } catch {
    return null;
  }
}
