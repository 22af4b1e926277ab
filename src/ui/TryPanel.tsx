// Step 6, "Try it": render with the base model and the LoRA side by side, an X/Y grid of saved steps × strengths, any kohya LoRA dropped on it.
import { useState, type DragEvent } from 'react';
import { useShallow } from 'zustand/react/shallow';
import { formatBytes } from '../protocol/index.js';
import { loraFileProblem } from './try-file.js';
import { cancelRender, chosenLora, gridLoras, renderGrid, renderPair, runLora } from './try-render.js';
import { MAX_STRENGTH, SAMPLER_LABELS, tryErrors, type TrySettings } from './try-settings.js';
import { useTry, type TryImage } from './try-store.js';
import { useApp } from './store.js';

/** Keep the dropped `.safetensors` LoRA files (a file of the same name replaces the earlier one); others are refused by name. */
async function addFiles(list: FileList | File[]): Promise<void> {
  const refused: string[] = [];
  for (const f of Array.from(list)) {
    const bytes = new Uint8Array(await f.arrayBuffer());
    const problem = loraFileProblem(f.name, bytes);
    if (problem) refused.push(problem);
    else useTry.setState((s) => ({ files: [...s.files.filter((x) => x.name !== f.name), { name: f.name, bytes }], use: f.name }));
  }
  useTry.setState({ message: refused.length ? refused.join(' ') : null });
}

/** Forget a dropped file (the side-by-side goes back to the run's LoRA if it used it). */
function removeFile(name: string): void {
  useTry.setState((s) => ({ files: s.files.filter((f) => f.name !== name), use: s.use === name ? 'run' : s.use }));
}

const pngName = (i: TryImage) => `${(i.settings.lora ?? 'base').replace(/[^\w.-]+/g, '_')}-seed${i.settings.seed}-strength${i.settings.strength}.png`;

/** One rendered image with its caption and a PNG download (the settings are in the file's text chunks). */
function Shot({ img, caption, testId }: { img: TryImage; caption: string; testId: string }) {
  return (
    <figure className="shot" data-testid={testId}>
      <img src={img.url} alt={caption} />
      <figcaption>
        {caption} · <a href={img.url} download={pngName(img)} data-testid={`${testId}-download`}>PNG</a>
      </figcaption>
    </figure>
  );
}

/** A field of the panel with its label and error. */
function Field({ k, label, error, children }: { k: keyof TrySettings; label: string; error?: string; children: React.ReactNode }) {
  return (
    <div className="field">
      <label htmlFor={`try-${k}`}>{label}</label>
      {children}
      {error && <small className="error" data-testid={`try-error-${k}`}>{error}</small>}
    </div>
  );
}

function num(v: string): number {
  return v === '' ? NaN : Number(v);
}

function Form({ s, set, resolution }: { s: TrySettings; set: (p: Partial<TrySettings>) => void; resolution: number }) {
  const e = tryErrors(s, resolution);
  const n = (k: keyof TrySettings, label: string, step = 1, extra: React.ReactNode = null) => (
    <Field k={k} label={label} error={e[k]}>
      <span className="row">
        <input id={`try-${k}`} type="number" step={step} value={Number.isNaN(s[k]) ? '' : String(s[k])} aria-invalid={!!e[k]} onChange={(ev) => set({ [k]: num(ev.target.value) })} />
        {extra}
      </span>
    </Field>
  );
  const side = (k: 'width' | 'height', label: string) => (
    <Field k={k} label={label} error={e[k]}>
      <input id={`try-${k}`} type="number" step={64} min={64} placeholder={`${resolution} (training size)`} value={s[k] ? String(s[k]) : ''} aria-invalid={!!e[k]} onChange={(ev) => set({ [k]: ev.target.value === '' ? 0 : Number(ev.target.value) })} />
    </Field>
  );
  return (
    <div className="fields">
      <Field k="prompt" label="Prompt" error={e.prompt}>
        <textarea id="try-prompt" value={s.prompt} onChange={(ev) => set({ prompt: ev.target.value })} />
      </Field>
      <Field k="negativePrompt" label="Negative prompt">
        <textarea id="try-negativePrompt" value={s.negativePrompt} onChange={(ev) => set({ negativePrompt: ev.target.value })} />
      </Field>
      {n('seed', 'Seed', 1, <button type="button" title="A new random seed" onClick={() => set({ seed: Math.floor(Math.random() * 2 ** 32) })}>Random</button>)}
      {n('steps', 'Steps')}
      {n('guidance', 'Guidance', 0.5)}
      <Field k="sampler" label="Sampler">
        <select id="try-sampler" value={s.sampler} onChange={(ev) => set({ sampler: ev.target.value as TrySettings['sampler'] })}>
          {SAMPLER_LABELS.map((o) => <option key={o.value} value={o.value}>{o.label}</option>)}
        </select>
      </Field>
      {side('width', 'Width')}
      {side('height', 'Height')}
      <Field k="strength" label={`LoRA strength ${Number.isNaN(s.strength) ? '' : s.strength.toFixed(2)}`} error={e.strength}>
        <input id="try-strength" type="range" min={0} max={MAX_STRENGTH} step={0.05} value={s.strength} onChange={(ev) => set({ strength: Number(ev.target.value) })} />
      </Field>
    </div>
  );
}

/** The renders' progress, denoising step by step. */
function Progress() {
  const p = useTry((s) => s.progress);
  if (!p) return null;
  const of = p.images ? ` · image ${Math.min(p.image + 1, p.images)} of ${p.images}` : '';
  return (
    <div data-testid="try-progress">
      <progress max={p.steps || 1} value={p.step} />
      <p>Rendering {p.label}{of} · step {p.step} of {p.steps}{p.steps && p.step === p.steps ? ', decoding with the VAE' : ''}</p>
      <button type="button" data-testid="try-cancel" onClick={() => void cancelRender()}>Cancel render</button>
    </div>
  );
}

function Grid() {
  const grid = useTry((s) => s.grid);
  if (!grid) return null;
  return (
    <table className="xy" data-testid="try-grid">
      <thead>
        <tr><th>strength</th>{grid.columns.map((c) => <th key={c}>{c}</th>)}</tr>
      </thead>
      <tbody>
        {grid.strengths.map((x, r) => (
          <tr key={x}>
            <th>{x}</th>
            {grid.images[r]!.map((img, c) => <td key={c}><Shot img={img} caption={x === 0 ? 'base' : `${grid.columns[c]} × ${x}`} testId={`try-cell-${r}-${c}`} /></td>)}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function TryPanel() {
  const t = useTry(useShallow((s) => ({ settings: s.settings, setSettings: s.setSettings, files: s.files, use: s.use, pair: s.pair, message: s.message, notes: s.notes, busy: !!s.progress })));
  const app = useApp(useShallow((s) => ({ lora: s.lora, ready: s.model.status === 'ready', running: !!s.run.starting || s.run.status === 'running', resolution: s.config.resolution, samplePrompt: s.config.samplePrompt, runStatus: s.run.status, saves: s.saves.length })));
  const [over, setOver] = useState(false);
  const drop = (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    void addFiles(e.dataTransfer.files);
  };
  const pick = chosenLora();
  const off = t.busy || !app.ready || app.running;
  const gridError = tryErrors(t.settings, app.resolution).gridStrengths;
  const columns = gridLoras().length;
  return (
    <section aria-labelledby="try-h" data-testid="try-drop" className={over ? 'over' : ''} onDragOver={(e) => (e.preventDefault(), setOver(true))} onDragLeave={() => setOver(false)} onDrop={drop}>
      <h2 id="try-h">6. Try it</h2>
      <p className="note">Render with the base model and with the LoRA from the same seed. Drop any kohya-format LoRA <code>.safetensors</code> here to try it too (also from other trainers; LyCORIS LoHa, LoKr and DoRA files too).</p>
      <div className="row">
        <label htmlFor="try-lora">LoRA</label>
        <select id="try-lora" data-testid="try-lora" value={pick && t.files.some((f) => f.name === t.use) ? t.use : 'run'} onChange={(e) => useTry.setState({ use: e.target.value })}>
          <option value="run" disabled={!app.lora}>{app.lora ? `this run: ${runLora()!.label}` : 'this run (none saved yet)'}</option>
          {t.files.map((f) => <option key={f.name} value={f.name}>{f.name}</option>)}
        </select>
        <label className="file">Add LoRA files<input type="file" accept=".safetensors" multiple data-testid="try-lora-input" onChange={(e) => e.target.files && void addFiles(e.target.files)} /></label>
      </div>
      {t.files.length > 0 && (
        <p className="note" data-testid="try-files">
          Dropped (kept in this tab only, grid columns after the run's saves):
          {t.files.map((f) => (
            <span key={f.name}> {f.name} ({formatBytes(f.bytes.length)}) <button className="remove" aria-label={`remove ${f.name}`} onClick={() => removeFile(f.name)}>×</button></span>
          ))}
        </p>
      )}
      <Form s={t.settings} set={t.setSettings} resolution={app.resolution} />
      {!t.settings.prompt && app.samplePrompt && <button className="link" onClick={() => t.setSettings({ prompt: app.samplePrompt })}>Use the sample prompt</button>}
      <div className="row">
        <button onClick={() => void renderPair()} disabled={off || !pick}>Render base and LoRA</button>
        <label htmlFor="try-gridStrengths">Grid strengths</label>
        <input id="try-gridStrengths" value={t.settings.gridStrengths} onChange={(e) => t.setSettings({ gridStrengths: e.target.value })} aria-invalid={!!gridError} />
        <button onClick={() => void renderGrid()} disabled={off || !columns}>Render X/Y grid ({columns} LoRA{columns === 1 ? '' : 's'} × strengths)</button>
      </div>
      {gridError && <small className="error" data-testid="try-error-gridStrengths">{gridError}</small>}
      {app.running && <p className="note" data-testid="try-locked">Rendering is off while the training run's steps go on: pause the run to render.</p>}
      {!app.ready && <p className="note" data-testid="try-hint">Load a base model (step 1) to render.</p>}
      {app.ready && !pick && <p className="note" data-testid="try-hint">Train a LoRA (step 4) or drop a kohya LoRA file on this panel to render with it.</p>}
      <Progress />
      {t.message && <p role={t.message.startsWith('Cancelled') ? 'status' : 'alert'} className={t.message.startsWith('Cancelled') ? 'note' : 'error'} data-testid="try-message">{t.message}</p>}
      {t.notes.length > 0 && <ul className="note" data-testid="try-notes">{t.notes.map((n) => <li key={n}>{n}</li>)}</ul>}
      {t.pair && (
        <div className="row pair">
          <Shot img={t.pair.base} caption="base model" testId="try-base" />
          <Shot img={t.pair.lora} caption={`${t.pair.lora.settings.lora} at ${t.pair.lora.settings.strength}`} testId="try-lora-image" />
        </div>
      )}
      <Grid />
    </section>
  );
}
