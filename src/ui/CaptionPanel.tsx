// Auto-captioning on the page: a WD14 tagger run in the worker over the dataset, its settings, progress and cancel, and the captions as a zip of .txt files.
import * as Comlink from 'comlink';
import { useState } from 'react';
import { captionsZip, formatBytes, thresholdProblem, type CaptionProgress } from '../protocol/index.js';
import { useCaptionSettings } from './caption-settings.js';
import { useApp } from './store.js';
import { trainer } from './worker.js';

/** A threshold as its field shows it: an emptied one (NaN, or null after a reload) stays empty. */
const shown = (v: number) => (typeof v === 'number' && !Number.isNaN(v) ? v : '');

const progressLine = (p: CaptionProgress) => (p.total ? `${p.stage} (${p.done} of ${p.total})` : p.stage);

/** Save bytes as a file through a temporary link. */
function download(bytes: Uint8Array, name: string): void {
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/zip' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function CaptionPanel() {
  const s = useCaptionSettings();
  const dataset = useApp((st) => st.dataset);
  const trigger = useApp((st) => st.config.triggerWord);
  const running = useApp((st) => st.run.status === 'running' || st.run.status === 'paused' || !!st.run.starting);
  const [busy, setBusy] = useState<string | null>(null);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  // The worker checks the request too; the form says it first, field by field.
  const fieldError = thresholdProblem(s.threshold) ?? thresholdProblem(s.characterThreshold, 'The character threshold');

  const caption = async () => {
    setResult(null);
    setBusy('Starting…');
    try {
      const r = await trainer().caption(
        { tagger: { repo: s.repo.trim(), endpoint: s.endpoint.trim() || undefined }, threshold: s.threshold, characterThreshold: s.characterThreshold, triggerWord: trigger },
        Comlink.proxy((p: CaptionProgress) => setBusy(progressLine(p))),
      );
      const by = new Map(r.captions.map((c) => [c.name, c.caption]));
      useApp.setState((st) => ({ dataset: st.dataset.map((d) => (by.has(d.name) ? { ...d, caption: by.get(d.name)!, note: undefined } : d)) }));
      const files = r.reused ? 'tagger already open' : r.hub.downloadedFiles ? `tagger downloaded (${formatBytes(r.hub.downloadedBytes)}), kept in this browser` : 'tagger from this browser';
      const where = r.provider === 'webgpu' ? 'WebGPU' : 'the CPU (wasm)';
      const what = r.cancelled ? `${r.cancelled} (on ${where}, ${files}).` : `Captioned ${r.captions.length} ${r.captions.length === 1 ? 'image' : 'images'} on ${where} (${files}).`;
      setResult({ ok: true, text: `${what} Edit any caption below.${r.note ? ` ${r.note}` : ''}` });
    } catch (e) {
      setResult({ ok: false, text: `Captioning failed: ${e instanceof Error ? e.message : String(e)}` });
    } finally {
      setBusy(null);
    }
  };

  const exportZip = () => {
    try {
      download(captionsZip(useApp.getState().dataset), 'captions.zip');
    } catch (e) {
      setResult({ ok: false, text: `Could not export the captions: ${e instanceof Error ? e.message : String(e)}` });
    }
  };

  return (
    <details className="captioner" data-testid="captioner">
      <summary>Auto-caption with a WD14 tagger</summary>
      <p className="note">
        Tags each image with a WD14-style tagger (a Hugging Face repository with model.onnx and selected_tags.csv, downloaded once and kept in this
        browser like base models), on the GPU when it can. Rating tags are left out; the trigger word{trigger ? ` "${trigger}"` : ' (Settings)'} comes first. The captions replace the current ones.
      </p>
      <label>Tagger repository <input aria-label="Tagger repository" value={s.repo} onChange={(e) => s.set({ repo: e.target.value })} /></label>{' '}
      <label>Threshold <input aria-label="Tag threshold" type="number" step={0.05} min={0.05} max={1} value={shown(s.threshold)} onChange={(e) => s.set({ threshold: e.target.valueAsNumber })} /></label>{' '}
      <label>Character threshold <input aria-label="Character tag threshold" type="number" step={0.05} min={0.05} max={1} value={shown(s.characterThreshold)} onChange={(e) => s.set({ characterThreshold: e.target.valueAsNumber })} /></label>
      <details>
        <summary>Tagger server</summary>
        <input aria-label="Tagger server" value={s.endpoint} onChange={(e) => s.set({ endpoint: e.target.value })} /> <small>the hub endpoint the tagger is downloaded from (a mirror answering /&lt;repo&gt;/resolve/&lt;revision&gt;/&lt;file&gt; with CORS)</small>
      </details>
      <p>
        <button onClick={caption} disabled={!!busy || running || !dataset.length || !!fieldError} title={running ? 'Captions are read when a run starts: caption before training' : undefined}>Caption all images</button>{' '}
        <button onClick={exportZip} disabled={!dataset.length}>Download captions (.zip)</button>
        {busy && <span role="status" data-testid="caption-progress"> {busy}</span>}
        {busy && <> <button onClick={() => void trainer().cancelCaption()} data-testid="caption-cancel">Cancel captioning</button></>}
      </p>
      {fieldError && <p role="alert" className="error" data-testid="caption-field-error">{fieldError}</p>}
      {result && <p role={result.ok ? 'status' : 'alert'} className={result.ok ? 'note' : 'error'} data-testid="caption-result">{result.text}</p>}
    </details>
  );
}
