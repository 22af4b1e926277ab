// The page's saves list, validation curve and per-image losses kept in OPFS as they change (opfs-saves.ts), and put back after a reload and when a kept run continues.
import { why } from './opfs.js';
import { serial } from './opfs-run.js';
import { forgetSaves, readSaves, writeSaves } from './opfs-saves.js';
import { runLockedElsewhere } from './run-lock.js';
import { NO_VALIDATION, runActive, useApp, type AppState } from './store.js';

/** The write waiting for its turn, if any: later changes ride on it (it takes the list as it is when it runs). */
let pending: Promise<void> | null = null;

/**
 * Keep the page's saves list (with the validation curve and per-image losses) as it is now, replacing
 * what was kept. Not while another tab's run is active: that tab's list is the one kept. A failure
 * (storage full) is said on the Train panel; the run goes on.
 */
export function keepSavesList(): Promise<void> {
  if (pending) return pending;
  const p = serial(async () => {
    pending = null;
    if (await runLockedElsewhere()) return;
    const st = useApp.getState();
    await writeSaves({ runName: st.lora?.runName ?? st.config.runName, validation: st.validation, imageLosses: st.imageLosses }, st.saves);
  }).catch((e: unknown) => {
    const message = `The saves list could not be kept in this browser's storage (${why(e)}): after a reload it may offer fewer saves`;
    useApp.setState((st) => ({ run: { ...st.run, message } }));
  });
  pending = p;
  return p;
}

type Kept = NonNullable<Awaited<ReturnType<typeof readSaves>>>;

/** The kept list as the page holds it, up to `step`: later saves and validations are made again by a run continued from there; the best is the lowest finite loss left (the first on ties), as validation.ts picks it. */
function upTo(k: Kept, step: number): Pick<AppState, 'saves' | 'validation' | 'imageLosses'> {
  const points = k.record.validation.points.filter((p) => p.step <= step);
  const best = points.reduce<{ step: number; loss: number } | null>((b, p) => (Number.isFinite(p.loss) && (!b || p.loss < b.loss) ? p : b), null);
  return { saves: k.saves.filter((s) => s.step <= step), validation: { ...k.record.validation, points, best }, imageLosses: k.record.imageLosses };
}

/**
 * The kept saves list back on the page: after a reload (`step` absent; only while the page has no
 * saves and no run of its own), or for a kept run continued from `step`. False when none is kept.
 */
export async function restoreSavesList(step?: number): Promise<boolean> {
  const kept = await serial(() => readSaves()).catch(() => null);
  // A continued run without a kept list starts its list afresh (not with another run's, still in memory).
  if (!kept && step !== undefined) useApp.setState({ saves: [], validation: NO_VALIDATION, imageLosses: {} });
  if (!kept) return false;
  const st = useApp.getState();
  if (step === undefined && (st.saves.length || runActive(st.run))) return false;
  useApp.setState(upTo(kept, step ?? Infinity));
  return true;
}

/** Forget the kept saves list (the person's choice), and the page's. */
export async function forgetSavesList(): Promise<void> {
  if (await runLockedElsewhere()) return;
  await serial(() => forgetSaves());
  useApp.setState({ saves: [] });
}
