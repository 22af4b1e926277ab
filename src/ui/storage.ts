// Browser storage before a hub download: ask to keep it (persistent storage) and compare what is needed with what the site may still store.
import { formatBytes as size } from '../protocol/index.js';

/** Downloads from this size on ask for persistent storage (the browser may otherwise evict gigabytes of weights). */
export const PERSIST_FROM_BYTES = 256 * 2 ** 20;

export interface StorageCheck {
  /** False when the browser says the site may store less than is needed. */
  enough: boolean;
  /** The numbers, in words, for the status line. */
  message: string;
}

/**
 * Before downloading `needed` bytes: for large downloads ask for persistent storage (some browsers
 * ask the person; Chrome decides by itself), then compare with `navigator.storage.estimate()`.
 * Without the Storage API nothing is known and the download goes ahead.
 */
export async function checkStorage(needed: number, storage: StorageManager | undefined = navigator.storage): Promise<StorageCheck> {
  const persisted = needed >= PERSIST_FROM_BYTES && storage?.persist ? await storage.persist().catch(() => false) : null;
  const est = storage?.estimate ? await storage.estimate().catch(() => null) : null;
  const keep = persisted === true ? ', kept as persistent storage' : persisted === false ? ', but the browser did not grant persistent storage: it may delete the files when the disk runs low' : '';
  if (!est?.quota) return { enough: true, message: `the download needs ${size(needed)}${keep}` };
  const used = est.usage ?? 0;
  const free = Math.max(0, est.quota - used);
  const numbers = `${size(free)} free of the ${size(est.quota)} this browser allows the site (${size(used)} used)`;
  if (needed > free)
    return { enough: false, message: `The download needs ${size(needed)} of browser storage but only ${numbers}. Free space on the disk, delete downloaded models, or download anyway without keeping what does not fit.` };
  return { enough: true, message: `the download needs ${size(needed)}; ${numbers}${keep}` };
}
