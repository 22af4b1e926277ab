// The run's validation loss in words, and its saves: the best step's LoRA and every kept save to download, within the stated storage budget.
import { useState } from 'react';
import { useShallow } from 'zustand/react/shallow';
import { DEFAULT_SAVES_BUDGET_MB, fitSaves, SAVES_BUDGET_RANGE, savesLine } from './saves.js';
import { forgetSavesList, keepSavesList } from './saves-sync.js';
import { useRecovery } from './recovery-run.js';
import { runActive } from './store.js';
import { useApp, type ValidationState } from './store.js';

/** Save bytes as a file download. */
export function downloadBytes(bytes: Uint8Array, name: string): void {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
  a.download = name;
  a.click();
}

/** The chart's validation series, aligned with the steps `x`: the losses (null between them) and the best step's marker. */
export function validationSeries(x: readonly number[], v: ValidationState) {
  if (!v.points.length) return [];
  const at = new Map(v.points.map((p) => [p.step, p.loss]));
  const series = [{ label: 'validation', values: x.map((s) => at.get(s) ?? null), color: '#093', points: true }];
  const best = v.best;
  return best ? [...series, { label: `best (step ${best.step})`, values: x.map((s) => (s === best.step ? best.loss : null)), color: '#e80', marker: true }] : series;
}

/** "Validation loss 0.1234 at step 40 · best 0.1200 at step 30". */
export function ValidationLine() {
  const v = useApp((st) => st.validation);
  const last = v.points.at(-1);
  if (!last) return null;
  return (
    <p data-testid="validation-line">
      Validation loss {last.loss.toFixed(4)} at step {last.step}
      {v.best && ` · best ${v.best.loss.toFixed(4)} at step ${v.best.step}${v.best.step === last.step ? ' (this one)' : ''}: its LoRA is kept under Result`}
    </p>
  );
}

/** The kept saves: the best one's download, each save's, and the budget they are kept within (a setting that survives a reload). */
export function Saves() {
  const { saves, best, budget, runName } = useApp(useShallow((st) => ({ saves: st.saves, best: st.validation.best, budget: st.savesBudgetMB, runName: st.lora?.runName ?? st.config.runName })));
  const [draft, setDraft] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const active = runActive(useApp((st) => st.run));
  const otherTab = useRecovery((r) => r.otherTab);
  const locked = active || otherTab;
  if (!saves.length) return null;
  const bestSave = best ? saves.find((s) => s.step === best.step) : undefined;
  const name = (step: number) => `${runName}-step${step}.safetensors`;
  const setBudget = (text: string) => {
    setDraft(text);
    const mb = Number(text);
    if (text.trim() === '' || !Number.isInteger(mb) || mb < SAVES_BUDGET_RANGE.min || mb > SAVES_BUDGET_RANGE.max) {
      setError(`The saves budget must be a whole number of MB between ${SAVES_BUDGET_RANGE.min} and ${SAVES_BUDGET_RANGE.max} (default ${DEFAULT_SAVES_BUDGET_MB})`);
      return;
    }
    setError(null);
    useApp.setState((st) => ({ savesBudgetMB: mb, saves: fitSaves(st.saves, mb * 1024 * 1024, st.validation.best?.step) }));
    void keepSavesList();
  };
  return (
    <div data-testid="saves">
      {bestSave && best && (
        <button data-testid="download-best" onClick={() => downloadBytes(bestSave.bytes, name(best.step))}>
          Download the best: {name(best.step)} (validation loss {best.loss.toFixed(4)})
        </button>
      )}
      <p className="note" data-testid="saves-line">
        {savesLine(saves, budget)}; download any:{' '}
        {saves.map((s) => (
          <button key={s.step} className="link" data-testid={`save-${s.step}`} onClick={() => downloadBytes(s.bytes, name(s.step))}>
            step {s.step}{s.step === best?.step ? ' (best)' : ''}
          </button>
        ))}
      </p>
      <label>
        Keep this run's saves up to <input type="number" aria-label="Saves budget (MB)" min={SAVES_BUDGET_RANGE.min} max={SAVES_BUDGET_RANGE.max} value={draft ?? String(budget)} onChange={(e) => setBudget(e.target.value)} /> MB in this browser (the last and the best always stay; a reload keeps them, the next run replaces them)
      </label>
      <button className="link" data-testid="forget-saves" disabled={locked} onClick={() => void forgetSavesList()}>
        Delete the kept saves
      </button>
      {error && <span className="error" role="alert"> {error}</span>}
    </div>
  );
}
