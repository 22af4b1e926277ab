// Steps 4 and 5: start/pause/unpause/stop as the worker reports the run (optionally continuing an earlier LoRA file), the live charts and previews, and the LoRA to download.
import { useEffect, useState } from 'react';
import { flushSync } from 'react-dom';
import * as Comlink from 'comlink';
import { useShallow } from 'zustand/react/shallow';
import { formatBytes, type RunCallbacks, type RunMetrics, type RunState } from '../protocol/index.js';
import { Chart } from './Chart.js';
import { keepLora } from './recovery.js';
import { fitSaves, keepSave } from './saves.js';
import { Saves, ValidationLine, validationSeries } from './SavesPanel.js';
import { noteRunStart, noteRunState, noteSave } from './recovery-run.js';
import { RecoveryOffer } from './RecoveryPanel.js';
import { addLogLine, RunLog } from './RunLog.js';
import { dropRunLock, OTHER_TAB, takeRunLock } from './run-lock.js';
import { keepSavesList } from './saves-sync.js';
import { NO_VALIDATION, runActive, runStatus, useApp, type AppState } from './store.js';
import { trainer } from './worker.js';

/** Turn a preview's RGBA bytes into a PNG object URL (replacing the previous one). */
async function showPreview(img: { width: number; height: number; data: Uint8ClampedArray }, step: number, prompt: string) {
  const canvas = new OffscreenCanvas(img.width, img.height);
  canvas.getContext('2d')!.putImageData(new ImageData(img.data as Uint8ClampedArray<ArrayBuffer>, img.width, img.height), 0, 0);
  const url = URL.createObjectURL(await canvas.convertToBlob({ type: 'image/png' }));
  const prev = useApp.getState().preview;
  if (prev) URL.revokeObjectURL(prev.url);
  useApp.setState({ preview: { url, step, prompt } });
}

const secs = (ms: number) => `${Math.max(0, Math.round(ms / 1000))} s`;

/** Precompiling counts pipelines done of total; once all are built, the first step runs on them. */
function compilingText(st: RunState): string {
  const head = 'Compiling GPU kernels: the first step builds every kernel it uses';
  if (st.total === undefined) return head;
  if ((st.done ?? 0) < st.total) return `${head} (${st.done ?? 0}/${st.total} compiled)`;
  return `${head} (${st.total ? `all ${st.total}` : 'all already'} compiled, first step running)`;
}

/** The run's phase in words, with its progress and how long it has taken so far. */
export function phaseText(st: RunState, now: number, lora: AppState['lora']): string {
  const elapsed = secs(now - st.since);
  const pausing = st.pausing ? ' · pausing after this step…' : '';
  switch (st.phase) {
    case 'idle':
      return '';
    case 'caching':
      return `Encoding ${st.done ?? 0}/${st.total ?? '?'} images with the VAE · ${elapsed}${pausing}`;
    case 'compiling':
      return `${compilingText(st)} · ${elapsed}${pausing}`;
    case 'running':
      return `Training${pausing}`;
    case 'paused':
      return 'Paused.';
    case 'stopping':
      return `Stopping after the current step or image… · ${elapsed}`;
    case 'done':
      if (!st.stopped) return `Finished ${st.step} steps; the LoRA from step ${st.savedStep} is saved.`;
      if (!st.savedStep) return `Stopped before the first step: nothing was trained or saved${lora ? `; the LoRA of “${lora.runName}” from step ${lora.step} is kept` : ''}.`;
      return `Stopped at step ${st.step}; the LoRA from step ${st.savedStep} is saved.`;
    case 'failed':
      return st.message ?? 'The run failed.';
  }
}

/** Speed as a person reads it: steps per second, or seconds per step when a step takes over a second. */
function speed(m: RunMetrics): string {
  if (!(m.stepsPerSec > 0)) return '';
  return m.stepsPerSec >= 1 ? `${m.stepsPerSec.toFixed(2)} steps/s` : `${(1 / m.stepsPerSec).toFixed(1)} s/step`;
}

/** A click's guard for the time before React re-renders (a double click lands in one task). */
let starting = false;

/** A start that did not happen, with why (and e.g. the field errors that stopped it); the other tabs may start again. */
function refuse(message: string, p: Partial<AppState> = {}): void {
  dropRunLock();
  useApp.getState().set({ ...p, run: { ...useApp.getState().run, starting: false, message } });
}

/** What the worker's run reports do to the page: run state, metrics, saved LoRAs (kept in browser storage), previews. */
export function runCallbacks(demo: boolean): RunCallbacks {
  return {
    onState: (state) => {
      useApp.setState((st) => ({ run: { status: runStatus(state), state, message: st.run.message } }));
      void noteRunState(state);
    },
    onMetrics: (m) => useApp.setState((st) => ({ metrics: [...st.metrics, m] })),
    onCheckpoint: (bytes, step, state) => {
      if (step <= 0) return; // an untrained LoRA never replaces the one shown
      void noteSave(step, bytes, state); // kept in OPFS, to continue the run after a crash
      const runName = useApp.getState().config.runName;
      useApp.setState((st) => ({ lora: { bytes, step, runName, demo }, saves: keepSave(st.saves, { step, bytes }, st.savesBudgetMB, st.validation.best?.step) }));
      void keepSavesList(); // the list too, within the budget, so that a reload keeps the earlier saves and the best
      void keepLora({ bytes, step, runName, savedAt: Date.now(), demo }).then((warn) => warn && useApp.setState((st) => ({ run: { ...st.run, message: warn } })));
    },
    onPreview: (img, step, prompt) => void showPreview(img, step, prompt),
    onLog: addLogLine,
    // A new best arrives before its save; the saves are refitted so an older best may go.
    onValidation: (v) => {
      useApp.setState((st) => {
        const best = v.best ? { step: v.step, loss: v.loss } : st.validation.best;
        const images = Object.fromEntries(v.images.map((i) => [i.name, i.loss]));
        return { validation: { points: [...st.validation.points, { step: v.step, loss: v.loss }], best, images }, saves: fitSaves(st.saves, st.savesBudgetMB * 1024 * 1024, best?.step) };
      });
      void keepSavesList();
    },
    onImageLosses: (losses) => {
      useApp.setState((st) => ({ imageLosses: { ...st.imageLosses, ...Object.fromEntries(losses.map((l) => [l.name, l])) } }));
      void keepSavesList();
    },
    onDone: () => {}, // the 'done' state says it
    onError: () => {}, // the 'failed' state says it
  };
}

/**
 * Start pressed: settings checked by the worker, a model and images present, then the run (optionally
 * continuing `continueFrom`, a LoRA or run-state file). `resumed`: the metrics so far of a kept run this continues.
 */
export async function startRun(continueFrom: File | Uint8Array | null, resumed?: RunMetrics[]): Promise<void> {
  if (starting || runActive(useApp.getState().run)) return;
  starting = true;
  const { set } = useApp.getState();
  // Off at once, before any await: a second click cannot start a second run.
  flushSync(() => set({ run: { ...useApp.getState().run, starting: true, message: undefined } }));
  try {
    // One run at a time per site: the tabs share the kept run (run-lock.ts).
    if (!(await takeRunLock())) return refuse(`${OTHER_TAB}: this tab can start one once it ends there (the tabs share one kept run in this browser).`);
    const v = await trainer().validateConfig(useApp.getState().config);
    if (!v.ok) return refuse('Fix the highlighted settings first.', { errors: v.errors });
    if (useApp.getState().model.status !== 'ready') return refuse('Load a base model first.');
    if (!useApp.getState().dataset.length) return refuse('Add at least one image first.');
    const prev = useApp.getState().preview;
    if (prev) URL.revokeObjectURL(prev.url);
    await noteRunStart(v.config, !!resumed);
    // A continued kept run keeps its saves, validation curve and per-image losses (continueKept put them back); a new run starts without.
    set({ metrics: resumed ?? [], log: [], preview: null, ...(resumed ? {} : { saves: [], validation: NO_VALIDATION, imageLosses: {} }) });
    void keepSavesList();
    const demo = !!useApp.getState().model.demo;
    const from = continueFrom instanceof Uint8Array ? continueFrom : continueFrom ? new Uint8Array(await continueFrom.arrayBuffer()) : undefined;
    await trainer().start(v.config, Comlink.proxy(runCallbacks(demo)), from);
  } catch (e) {
    refuse(e instanceof Error ? e.message : String(e));
  } finally {
    starting = false;
  }
}

export function TrainPanel() {
  // What the panel shows; a metric re-renders it (and the charts), but not the settings form.
  const s = useApp(
    useShallow((st) => ({ run: st.run, metrics: st.metrics, validation: st.validation, lora: st.lora, preview: st.preview, memory: st.memory, demo: !!st.model.demo, modelStatus: st.model.status, modelName: st.model.name, images: st.dataset.length, config: st.config })),
  );
  const [logScale, setLog] = useState(false);
  /** An earlier LoRA file to continue training from (not unpausing: that is the Resume button). */
  const [continueFrom, setContinueFrom] = useState<File | null>(null);
  const [now, setNow] = useState(Date.now());
  const phase = s.run.state?.phase ?? 'idle';
  const ticking = phase === 'caching' || phase === 'compiling' || phase === 'stopping';
  useEffect(() => {
    if (!ticking) return;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [ticking]);
  // A message of the page's own answered the last action; the next one (new images, a model, a setting) clears it.
  useEffect(() => {
    if (useApp.getState().run.message) useApp.setState((st) => ({ run: { ...st.run, message: undefined } }));
  }, [s.images, s.modelStatus, s.modelName, s.config]);
  const last = s.metrics.at(-1);
  const active = runActive(s.run);

  const start = () => startRun(continueFrom);
  const x = s.metrics.map((m) => m.step);
  const status = [s.run.state && !s.run.starting ? phaseText(s.run.state, now, s.lora) : s.run.starting ? 'Starting…' : '', s.run.message].filter(Boolean).join(' · ');
  const failed = phase === 'failed' || (!!s.run.message && !active);
  return (
    <>
      <section aria-labelledby="train-h">
        <h2 id="train-h">4. Train</h2>
        <RecoveryOffer start={(from, metrics) => startRun(from, metrics)} />
        <div className="row">
          <button onClick={start} disabled={active}>Start training</button>
          <button onClick={() => void trainer().pause()} disabled={!['caching', 'compiling', 'running'].includes(phase) || !!s.run.state?.pausing}>Pause</button>
          <button onClick={() => void trainer().unpause()} disabled={phase !== 'paused'}>Resume</button>
          <button onClick={() => void trainer().stop()} disabled={!['caching', 'compiling', 'running', 'paused'].includes(phase)}>Stop</button>
          <label><input type="checkbox" checked={logScale} onChange={(e) => setLog(e.target.checked)} /> log scale</label>
          <label className="file" title="Same network dim and targets as the earlier run">
            {continueFrom ? `Continuing ${continueFrom.name}` : 'Continue an earlier LoRA (optional)'}
            <input type="file" accept=".safetensors" data-testid="resume-input" disabled={active} onChange={(e) => setContinueFrom(e.target.files?.[0] ?? null)} />
          </label>
        </div>
        <p data-testid="run-status" data-phase={s.run.starting ? 'starting' : phase} role={failed ? 'alert' : undefined} className={failed ? 'error' : ''}>
          {status}
        </p>
        <RunLog />
        {last && (
          <div>
            <progress max={last.totalSteps} value={last.step} />
            <p data-testid="step-counter">
              step {last.step} / {last.totalSteps} · loss {last.loss.toFixed(4)} (smoothed {last.smoothLoss.toFixed(4)}) · {speed(last)} · {last.step >= 2 ? `ETA ${Math.round(last.etaMs / 1000)} s` : 'ETA after the second step'} · GPU {formatBytes(last.heldBytes)} held, peak {formatBytes(last.peakHeldBytes)}{s.memory ? ` (forecast ${formatBytes(s.memory.peakBytes)})` : ''}
            </p>
          </div>
        )}
        {s.metrics.length > 0 && (
          <>
            <Chart title="Loss" testId="loss-chart" x={x} log={logScale} series={[{ label: 'loss', values: s.metrics.map((m) => m.loss), color: '#9bb' }, { label: 'smoothed', values: s.metrics.map((m) => m.smoothLoss), color: '#c33' }, ...validationSeries(x, s.validation)]} />
            <ValidationLine />
            <Chart
              title="Learning rate"
              testId="lr-chart"
              exponent
              x={x}
              series={[
                { label: 'U-Net LR', values: s.metrics.map((m) => m.lrUnet), color: '#36c' },
                ...(s.metrics.some((m) => m.lrTextEncoder > 0) ? [{ label: 'text encoder LR', values: s.metrics.map((m) => m.lrTextEncoder), color: '#c80' }] : []),
              ]}
            />
          </>
        )}
        {/* After a reload the kept validation losses are told without a chart (the steps' metrics come back with a continue). */}
        {!s.metrics.length && <ValidationLine />}
        {s.preview && (
          <figure className="preview" data-testid="sample">
            <img src={s.preview.url} alt={`preview at step ${s.preview.step}`} />
            <figcaption>
              Step {s.preview.step}: “{s.preview.prompt}”{s.demo ? ' (the demo model has random weights: its previews are noise by design)' : ''}
            </figcaption>
          </figure>
        )}
      </section>
      <Result />
    </>
  );
}

/** Step 5: the LoRA to download, and where it goes (only for LoRAs of real models). */
function Result() {
  const lora = useApp((s) => s.lora);
  const triggerWord = useApp((s) => s.config.triggerWord);
  const download = () => {
    if (!lora) return;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([lora.bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
    a.download = `${lora.runName}.safetensors`;
    a.click();
  };
  return (
    <section aria-labelledby="result-h">
      <h2 id="result-h">5. Result</h2>
      {lora ? (
        <div>
          {lora.recovered && <p data-testid="recovered">Kept from your last session: the LoRA of run “{lora.runName}” as saved at step {lora.step}.</p>}
          <button onClick={download} data-testid="download">Download {lora.runName}.safetensors (step {lora.step})</button>
          {lora.demo ? (
            <p data-testid="usage-note">Trained on the demo model, whose weights are random: this LoRA is for trying the app, not for AUTOMATIC1111, Forge or ComfyUI. Load a real SD 1.x model for a LoRA to use.</p>
          ) : (
            <p data-testid="usage-note">Put it in AUTOMATIC1111's or Forge's <code>models/Lora</code> folder and write <code>&lt;lora:{lora.runName}:0.8&gt;</code>{triggerWord ? <> together with the trigger word <b>{triggerWord}</b></> : null} in the prompt; in ComfyUI use a LoraLoader node (strength 0.8 is a good start).</p>
          )}
        </div>
      ) : (
        <p>The LoRA appears here after its first save.</p>
      )}
      <Saves />
    </section>
  );
}
