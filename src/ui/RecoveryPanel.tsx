// The page's recovery: "Continue the run from step N" for a run that did not finish, and the kept images with the button that deletes them.
import { useEffect } from 'react';
import { formatBytes, type RunMetrics } from '../protocol/index.js';
import { loadModelSource } from './ModelPanel.js';
import { continueKept, discardKept, refreshRecovery, unfinished, useRecovery } from './recovery-run.js';
import { OTHER_TAB, watchRunLock } from './run-lock.js';
import { runActive, useApp } from './store.js';

const when = (t: number) => new Date(t).toLocaleString();

/** What a kept save continues with, in words. */
function savedWhat(kind: 'state' | 'lora'): string {
  return kind === 'state'
    ? 'its optimizer, schedule and random streams are kept too, so it goes on as if it had never stopped'
    : 'only its LoRA was kept (not the optimizer state): training goes on from those weights with the optimizer and schedule starting over';
}

/** The offer to continue a kept run that did not finish (after a reload, a closed tab, a lost GPU or a Stop). */
export function RecoveryOffer({ start }: { start: (from: Uint8Array, metrics: RunMetrics[]) => Promise<void> }) {
  const { run, busy, message, images, otherTab } = useRecovery();
  const active = runActive(useApp((s) => s.run));
  useEffect(() => {
    void refreshRecovery();
    return watchRunLock(() => void refreshRecovery(), () => useRecovery.getState().otherTab);
  }, []);
  if (otherTab && !active)
    return (
      <p className="summary warn" role="status" data-testid="other-tab">
        {OTHER_TAB}{run ? ` (“${run.runName}”, saved at step ${run.step} of ${run.totalSteps})` : ''}: this tab cannot start, continue or discard a run until it ends there, since the tabs share one kept run in this browser.
      </p>
    );
  if (active && run)
    return (
      <p className="note" data-testid="recovery-kept">
        The run's state at step {run.step} is kept in this browser: after a reload, a closed tab or a lost GPU it can go on from there.
      </p>
    );
  const offer = run && unfinished(run) && !active;
  if (!offer) return message ? <p className="error" role="alert" data-testid="recovery-message">{message}</p> : null;
  return (
    <div className="summary warn" data-testid="recovery">
      <p>
        Run “{run.runName}” on {run.modelName} did not finish: it was saved at step {run.step} of {run.totalSteps} ({when(run.savedAt)}); {savedWhat(run.kind)}. Its {images.images} images and its settings are kept in this browser.
      </p>
      <div className="row">
        <button onClick={() => void continueKept((s) => loadModelSource(s), start)} disabled={busy}>
          Continue the run from step {run.step}
        </button>
        <button className="link" onClick={() => void discardKept()} disabled={busy}>
          Discard it
        </button>
        {busy && <span role="status">Loading its model and images…</span>}
      </div>
      <p className="note">Starting a new run replaces it.</p>
      {message && <p className="error" role="alert" data-testid="recovery-message">{message}</p>}
    </div>
  );
}

/** The images kept on this machine for recovery, with the way to delete them (shown while any are kept). */
export function KeptImages() {
  const images = useRecovery((s) => s.images);
  const run = useRecovery((s) => s.run);
  const otherTab = useRecovery((s) => s.otherTab);
  const active = runActive(useApp((s) => s.run));
  if (!images.images) return null;
  return (
    <p className="note" data-testid="kept-images">
      {images.images} {images.images === 1 ? 'image' : 'images'} of the last run ({formatBytes(images.bytes)}) {images.images === 1 ? 'is' : 'are'} kept in this browser's private storage on this machine, never uploaded, so that the run can go on after a reload, a closed tab or a lost GPU; they are deleted when the run finishes.
      <button className="link" disabled={active || otherTab} onClick={() => void discardKept()}>
        Delete the kept images{run && unfinished(run) ? ' (the unfinished run can then not be continued)' : ''}
      </button>
    </p>
  );
}
