// Step 1: the base model — the tiny demo, a Hugging Face repo (cached in the browser) or a dropped checkpoint.
import { useEffect, useState } from 'react';
import * as Comlink from 'comlink';
import { formatBytes, HF_ENDPOINT, type CachedRepo, type ComponentProgress, type LoadProgress, type ModelInfo, type ModelSource } from '../protocol/index.js';
import { CHECKPOINT_ACCEPT, HEAD_BYTES, pickleCheckpoint } from './checkpoint.js';
import { checkStorage } from './storage.js';
import { noteModelLoaded } from './recovery-run.js';
import { applyModelSize, runActive, useApp, type AppState } from './store.js';
import { trainer } from './worker.js';

/** Where a hub model's files came from, for the status line. */
function hubNote(h: NonNullable<ModelInfo['hub']>): string {
  const parts: string[] = [];
  if (h.downloadedFiles === 0 && h.uncachedFiles === 0) parts.push('loaded from browser cache');
  else if (h.downloadedFiles > 0)
    parts.push(`downloaded ${formatBytes(h.downloadedBytes)} (${h.downloadedFiles} files, now kept in the browser cache)${h.cachedFiles ? `, ${h.cachedFiles} files loaded from browser cache` : ''}`);
  if (h.uncachedFiles) parts.push(`${h.uncachedFiles} files read from the network and not cached: ${h.note ?? 'no browser cache'}`);
  return parts.join('; ');
}

/** One part's line: downloading, being read from the file onto the GPU, waiting, or done (bytes as stored in the file). */
function componentText(c: ComponentProgress): string {
  const of = (a: number, b: number) => (b ? `${formatBytes(a)} of ${formatBytes(b)}` : formatBytes(a));
  if (c.done) return `${c.name}: ${formatBytes(c.loadedBytes)} loaded ✓`;
  if (c.loadedBytes > 0) return `${c.name}: ${of(c.loadedBytes, c.totalBytes)} loaded`;
  const d = c.downloaded;
  if (d && (!d.totalBytes || d.loadedBytes < d.totalBytes)) return `${c.name}: downloading ${of(d.loadedBytes, d.totalBytes)}`;
  return `${c.name}: waiting${c.totalBytes ? ` (${formatBytes(c.totalBytes)})` : ''}`;
}

const tokenizerUrl = () => new URL('clip-tokenizer/', document.baseURI).href;

/** While a run goes on the model cannot change under it (the run would fail): the reason, for the page. */
const DURING_RUN = 'Model actions are off while a training run is active: stop the run first (its last saved LoRA is kept).';

const set = (p: Partial<AppState>) => useApp.getState().set(p);

/** The ready model, without an earlier failure's note: what a failed load goes back to. */
function readyModel(): AppState['model'] | null {
  const m = useApp.getState().model;
  return m.status === 'ready' ? { ...m, failed: undefined, help: undefined, retry: undefined } : null;
}
/** A load that failed or did not happen: the ready model stays (the worker keeps it too), with why; else the error. */
const fail = (kept: AppState['model'] | null, message: string, extra: Pick<AppState['model'], 'help' | 'retry' | 'components'> = {}) =>
  set({ model: kept ? { ...kept, ...extra, components: kept.components, failed: `${message} (${kept.name} is still loaded)` } : { status: 'error', message, ...extra } });

/** Load a model as the panel does (progress, notes, its native size); a ready model stays loaded in the worker until the new one has loaded: a failed load goes back to it. */
export async function loadModelSource(source: ModelSource, note?: string, kept = readyModel()): Promise<void> {
  if (runActive(useApp.getState().run)) return; // the locked note says why
  set({ model: { status: 'loading', progress: 0, message: note } });
  // Progress arrives on the callback's own message port, so a last report can land after the result.
  let done = false;
  let components: ComponentProgress[] | undefined;
  const onProgress = (p: LoadProgress) => {
    if (done) return;
    components = p.components ?? components;
    set({ model: { status: 'loading', progress: p.totalBytes ? p.loadedBytes / p.totalBytes : 0, message: p.stage, components } });
  };
  try {
    const info = await trainer().loadModel(source, Comlink.proxy(onProgress)).finally(() => (done = true));
    set({ model: { status: 'ready', name: info.name, message: `${formatBytes(info.weightBytes)} on the GPU${info.hub ? `; ${hubNote(info.hub)}` : ''}${note ? `; ${note}` : ''}`, components: info.components, notes: info.notes, demo: info.demo } });
    noteModelLoaded(source, info.name);
    const size = applyModelSize(info.name, info.resolutionHint);
    if (size) set({ model: { ...useApp.getState().model, message: `${useApp.getState().model.message}; ${size}` } });
  } catch (e) {
    fail(kept, e instanceof Error ? e.message : String(e), { components });
  }
}

export function ModelPanel() {
  const model = useApp((st) => st.model);
  const set = useApp((st) => st.set);
  const runBusy = runActive(useApp((st) => st.run));
  const [repo, setRepo] = useState('');
  const [endpoint, setEndpoint] = useState(HF_ENDPOINT);
  const [cached, setCached] = useState<CachedRepo[]>([]);
  const [over, setOver] = useState(false);
  const refreshCached = () => void trainer().cachedModels().then(setCached, () => setCached([]));
  useEffect(refreshCached, [model.status]);
  const load = loadModelSource;

  /** Hub loads: say how much will be downloaded against the browser's storage before any download starts. */
  const loadHub = async (force = false) => {
    if (runActive(useApp.getState().run)) return; // the locked note says why
    const source: ModelSource = { kind: 'hub', repo: repo.trim(), endpoint: endpoint.trim() || HF_ENDPOINT };
    const kept = readyModel();
    set({ model: { status: 'loading', progress: 0, message: 'checking what to download' } });
    const download = await trainer().hubDownloadPlan(source).catch(() => null); // the load itself names what is wrong
    const storage = download && download.bytes > 0 ? await checkStorage(download.bytes) : null;
    if (storage && !storage.enough && !force)
      return fail(kept, storage.message, { retry: { label: 'Download anyway (files that do not fit are read from the network each time)', run: () => void loadHub(true) } });
    await load(source, storage?.message, kept);
  };

  /** A picked or dropped checkpoint: pickles are explained, never sent; the rest is read by the worker in slices. */
  const loadFile = async (file: File) => {
    if (runActive(useApp.getState().run)) return; // the locked note says why
    const head = new Uint8Array(await file.slice(0, HEAD_BYTES).arrayBuffer());
    const pickle = pickleCheckpoint(file.name, head);
    if (pickle) return fail(readyModel(), pickle.message, { help: pickle.help });
    await load({ kind: 'file', file, tokenizerUrl: tokenizerUrl() });
  };

  const busy = model.status === 'loading' || runBusy;
  return (
    <section
      aria-labelledby="model-h"
      className={over ? 'over' : ''}
      data-testid="model-drop"
      onDragOver={(e) => (e.preventDefault(), setOver(true))}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        const f = e.dataTransfer.files[0];
        if (f && !busy) void loadFile(f);
      }}
    >
      <h2 id="model-h">1. Base model</h2>
      <div className="row">
        <button disabled={busy} onClick={() => load({ kind: 'tiny', baseUrl: new URL('tiny/', document.baseURI).href })}>Use the tiny demo model</button>
        <input aria-label="Hugging Face repo id" placeholder="stable-diffusion-v1-5/stable-diffusion-v1-5" value={repo} onChange={(e) => setRepo(e.target.value)} />
        <button disabled={!repo.trim() || busy} onClick={() => loadHub()}>Load from the Hub</button>
        <label className="file" title="A .ckpt, .pt, .pth or .bin file is a PyTorch pickle: the page says how to convert it">
          Or a .safetensors checkpoint (drop it here)
          <input type="file" accept={CHECKPOINT_ACCEPT} data-testid="checkpoint-input" disabled={busy} onChange={(e) => e.target.files?.[0] && loadFile(e.target.files[0])} />
        </label>
      </div>
      <details>
        <summary>Hub endpoint</summary>
        <input aria-label="Hub endpoint" value={endpoint} onChange={(e) => setEndpoint(e.target.value)} /> <small>a mirror or local server answering /&lt;repo&gt;/resolve/&lt;revision&gt;/&lt;file&gt; with CORS; files are cached in this browser after the first download</small>
      </details>
      {cached.length > 0 && (
        <p data-testid="cached-models">
          Kept in this browser: {cached.map((c) => `${c.repo}${c.revision !== 'main' ? `@${c.revision}` : ''} (${formatBytes(c.bytes)})`).join(', ')}{' '}
          <button className="link" disabled={busy} onClick={() => void trainer().deleteCachedModels().then(refreshCached)}>
            Delete downloaded models
          </button>
        </p>
      )}
      <p data-testid="model-status" className={model.status === 'error' ? 'error' : ''} role={model.status === 'error' ? 'alert' : undefined}>
        {model.status === 'none' && 'No model loaded.'}
        {model.status === 'loading' && `Loading ${model.message ?? ''}… ${Math.round((model.progress ?? 0) * 100)}%`}
        {model.status === 'ready' && `Ready: ${model.name}${model.demo ? ' — random weights: previews are noise by design; its LoRAs are for trying the app, not for AUTOMATIC1111' : ''} (${model.message})`}
        {model.status === 'ready' && model.failed && (
          <span className="error block" role="alert" data-testid="model-failed">
            {model.failed}
            {model.retry && (
              <button className="link" onClick={model.retry.run}>
                {model.retry.label}
              </button>
            )}
          </span>
        )}
        {model.status === 'error' && model.message}
        {model.status === 'error' && model.retry && (
          <button className="link" onClick={model.retry.run}>
            {model.retry.label}
          </button>
        )}
      </p>
      {runBusy && <p className="note" data-testid="model-locked">{DURING_RUN}</p>}
      {(model.status === 'error' || model.failed) && model.help && <pre className="help" data-testid="model-help">{model.help}</pre>}
      {model.status === 'ready' && model.notes?.length ? (
        <ul className="components" data-testid="model-notes">
          {model.notes.map((n) => (
            <li key={n}>{n}</li>
          ))}
        </ul>
      ) : null}
      {model.components?.some((c) => c.loadedBytes || c.totalBytes || c.downloaded) && (
        <ul className="components" data-testid="load-components">
          {model.components.map((c) => (
            <li key={c.name}>{componentText(c)}</li>
          ))}
        </ul>
      )}
    </section>
  );
}
