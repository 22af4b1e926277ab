// One run at a time across the page's tabs: the tab whose run is active holds the Web Lock RUN_LOCK, so a second tab can neither start nor continue a run into the same kept state (OPFS keeps one run per site).

/** The Web Lock a tab holds while its run is active (from Start or Continue until the run ends). */
export const RUN_LOCK = 'lorasmith-run';
/** What a tab says when another tab of the page holds the lock. */
export const OTHER_TAB = 'A run is already training in another tab of this page';

/** Ends this tab's hold on the lock; null when it holds none. */
let release: (() => void) | null = null;
/** This tab's last request, settled once the lock it held is free again (a drop lets go a moment later). */
let request: Promise<unknown> = Promise.resolve();
/** Tells the page's other tabs that the lock was taken or dropped (a closed tab drops it silently: `watchRunLock` polls meanwhile). */
const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(RUN_LOCK) : null;

const locks = (): LockManager | undefined => globalThis.navigator?.locks;

/**
 * Take the run lock for this tab: true when it holds it (already or now), false when another tab
 * does. Without the Web Locks API (an old browser, an insecure origin) there is no guard: true.
 */
export async function takeRunLock(): Promise<boolean> {
  const l = locks();
  if (release || !l) return true;
  await request; // this tab's own lock, just dropped, is not another tab's
  const granted = await new Promise<boolean>((resolve) => {
    request = l
      .request(RUN_LOCK, { ifAvailable: true }, (lock) => {
        resolve(!!lock);
        return lock ? new Promise<void>((r) => (release = r)) : undefined;
      })
      .catch(() => resolve(true));
  });
  if (granted) channel?.postMessage('taken');
  return granted;
}

/** Let go of the run lock (the run ended, or its start was refused); nothing when this tab holds none. */
export function dropRunLock(): void {
  if (!release) return;
  release();
  release = null;
  channel?.postMessage('dropped');
}

/** Whether a tab other than this one holds the run lock (its run is active). */
export async function runLockedElsewhere(): Promise<boolean> {
  const l = locks();
  if (release || !l) return false;
  const q = await l.query().catch(() => ({ held: [] as LockInfo[] }));
  return (q.held ?? []).some((h) => h.name === RUN_LOCK);
}

/** Call `f` when another tab takes or drops the lock, and every `pollMs` while `elsewhere()` says one holds it (a closed tab sends nothing). Returns the unsubscribe. */
export function watchRunLock(f: () => void, elsewhere: () => boolean, pollMs = 3000): () => void {
  const onMessage = () => f();
  channel?.addEventListener('message', onMessage);
  const t = setInterval(() => elsewhere() && f(), pollMs);
  return () => {
    channel?.removeEventListener('message', onMessage);
    clearInterval(t);
  };
}
