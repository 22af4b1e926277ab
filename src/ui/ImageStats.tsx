// Under each image of the dataset grid: its training loss so far (marked when it stands out), its validation loss when it validates, and the validation mark.
import { useShallow } from 'zustand/react/shallow';
import { medianLoss, standsOut } from './image-stats.js';
import { useApp } from './store.js';
import { trainer } from './worker.js';

/** Mark or unmark an image for validation (held out when validation is 'holdout'), on the page and in the worker. */
function mark(name: string, validation: boolean): void {
  useApp.setState((st) => ({ dataset: st.dataset.map((d) => (d.name === name ? { ...d, validation } : d)) }));
  void trainer().setValidationMark(name, validation);
}

export function ImageStats({ name }: { name: string }) {
  const { loss, median, validationLoss, holdout, marked } = useApp(
    useShallow((st) => ({
      loss: st.imageLosses[name],
      median: medianLoss(st.imageLosses),
      validationLoss: st.validation.images[name],
      holdout: st.config.validation === 'holdout',
      marked: !!st.dataset.find((d) => d.name === name)?.validation,
    })),
  );
  const out = standsOut(loss, median);
  return (
    <>
      {loss && (
        <small className={out ? 'error' : 'note'} data-testid="image-loss" title={out ? `Well above the dataset's median (${median!.toFixed(4)}): check its caption and the image` : 'Mean training loss of this image so far'}>
          loss {loss.mean.toFixed(4)} ({loss.count} {loss.count === 1 ? 'sample' : 'samples'}){out ? ' — stands out' : ''}
        </small>
      )}
      {validationLoss !== undefined && <small className="note" data-testid="image-validation-loss">validation loss {validationLoss.toFixed(4)}</small>}
      {holdout && (
        <label className="note">
          <input type="checkbox" aria-label={`validation image ${name}`} checked={marked} onChange={(e) => mark(name, e.target.checked)} /> validation (held out)
        </label>
      )}
    </>
  );
}
