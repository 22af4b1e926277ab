// The settings form: basics first, advanced folded away, help per field, per-field errors and a live summary.
import { memo, useEffect, useState } from 'react';
import { useShallow } from 'zustand/react/shallow';
import { MemoryLine } from './MemoryLine.js';
import { ADVANCED, BASIC, plural, withLinkedFields, type Field } from './settings-fields.js';
import { chooseConfig, useApp } from './store.js';
import { trainer } from './worker.js';
import type { TrainConfig } from '../protocol/index.js';

/** A change made on the form, with the fields it carries along (optimizer presets, conv alpha following conv dim). */
function change(p: Partial<TrainConfig>, setNote: (n: { key: keyof TrainConfig; text: string } | null) => void): void {
  const { patch, note } = withLinkedFields(useApp.getState().config, p);
  chooseConfig(patch);
  setNote(note ?? null);
}

/** The line a linked change leaves under its field (what an optimizer preset set). */
export type Note = { key: keyof TrainConfig; text: string } | null;

/** One field of the form; it reads only its own value and error, so a metric or another field's edit does not re-render it. */
export const Input = memo(function Input({ f, note, setNote }: { f: Field; note: Note; setNote: (n: Note) => void }) {
  const v = useApp((s) => s.config[f.key]);
  const err = useApp((s) => s.errors[f.key]);
  const set = (p: Partial<TrainConfig>) => change(p, setNote);
  const id = `cfg-${f.key}`;
  const control =
    f.kind === 'bool' ? (
      <input id={id} type="checkbox" checked={Boolean(v)} onChange={(e) => set({ [f.key]: e.target.checked } as Partial<TrainConfig>)} />
    ) : f.kind === 'select' ? (
      <select id={id} value={String(v)} onChange={(e) => set({ [f.key]: e.target.value } as Partial<TrainConfig>)}>
        {f.options!.map((o) => <option key={o}>{o}</option>)}
      </select>
    ) : (
      <input id={id} type={f.kind === 'number' ? 'number' : 'text'} step={f.step ?? 'any'} value={typeof v === 'number' && Number.isNaN(v) ? '' : String(v)} aria-invalid={!!err} aria-describedby={`${id}-help`}
        onChange={(e) => set({ [f.key]: f.kind === 'number' ? (e.target.value === '' ? NaN : Number(e.target.value)) : e.target.value } as Partial<TrainConfig>)} />
    );
  return (
    <div className="field">
      <label htmlFor={id}>{f.label}</label>
      {control}
      <small id={`${id}-help`}>{f.help}</small>
      {note?.key === f.key && <small className="note" data-testid={`note-${f.key}`}>{note.text}</small>}
      {err && <small className="error" data-testid={`error-${f.key}`}>{err}</small>}
    </div>
  );
});

export function Settings() {
  // The inputs themselves read the config field by field; this reads what the summary and the check need.
  const { config, runPlan: plan, errors, set, dataset, modelStatus, runStatus } = useApp(
    useShallow((s) => ({ config: s.config, runPlan: s.runPlan, errors: s.errors, set: s.set, dataset: s.dataset, modelStatus: s.model.status, runStatus: s.run.status })),
  );
  const [note, setNote] = useState<Note>(null);
  useEffect(() => {
    const t = setTimeout(async () => {
      try {
        const r = await trainer().validateConfig(config);
        set(r.ok ? { errors: {}, runPlan: r.plan ?? null, memory: r.memory ?? null } : { errors: r.errors, runPlan: null, memory: null });
      } catch (e) {
        // The worker failed to judge these settings (e.g. the memory forecast threw): say so on the page.
        set({ errors: { config: `These settings could not be checked: ${e instanceof Error ? e.message : String(e)}` }, runPlan: null, memory: null });
      }
    }, 150);
    return () => clearTimeout(t);
    // After a run the memory advice, held back while it ran, is worked out.
  }, [config, dataset, modelStatus, runStatus, set]);
  const exportPreset = () => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([JSON.stringify(config, null, 2)], { type: 'application/json' }));
    a.download = `${config.runName}-preset.json`;
    a.click();
  };
  const importPreset = async (f: File) => {
    try {
      // A preset is taken as it is: its own LRs stand, whatever its optimizer's defaults are.
      chooseConfig(JSON.parse(await f.text()));
      setNote(null);
    } catch {
      set({ errors: { preset: `${f.name} is not a JSON preset` } });
    }
  };
  return (
    <section aria-labelledby="set-h">
      <h2 id="set-h">3. Settings</h2>
      <div className="fields">{BASIC.map((f) => <Input key={f.key} f={f} note={note?.key === f.key ? note : null} setNote={setNote} />)}</div>
      <details>
        <summary>Advanced</summary>
        <div className="fields">{ADVANCED.map((f) => <Input key={f.key} f={f} note={note?.key === f.key ? note : null} setNote={setNote} />)}</div>
      </details>
      <div className="row">
        <button onClick={exportPreset}>Export preset</button>
        <label className="file">Import preset<input type="file" accept=".json" onChange={(e) => e.target.files?.[0] && importPreset(e.target.files[0])} /></label>
        {errors.preset && <span className="error">{errors.preset}</span>}
      </div>
      <p className="summary" data-testid="summary">
        {plan
          ? `Effective batch ${plan.effectiveBatch} · ${plural(plan.steps, 'optimizer step')} · ${plural(plan.epochs, 'epoch')} · U-Net LR ${plan.unetLr.toExponential(2)} · text-encoder LR ${plan.textEncoderLr.toExponential(2)} · warmup ${plural(plan.warmupSteps, 'step')} · saved every ${plural(plan.saveEvery, 'step')}${plan.validateEvery ? ` · validation loss every ${plural(plan.validateEvery, 'step')}` : ''}`
          : 'Fix the settings marked in red.'}
        {/* Errors that belong to no field on the form (the worker's own, the image count). */}
        {Object.entries(errors)
          .filter(([k]) => k !== 'preset' && ![...BASIC, ...ADVANCED].some((f) => f.key === k))
          .map(([k, m]) => <span key={k} className="error" data-testid={`error-${k}`}> {m}</span>)}
      </p>
      <MemoryLine />
    </section>
  );
}
