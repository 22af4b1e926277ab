// Step 1: the base model — the tiny demo, a Hugging Face repo (cached in the browser) or a dropped checkpoint.
import { useEffect, useState } from 'react';
import * as Comlink from 'comlink';
import { HF_ENDPOINT } from '../model/hub-cache.js';
import type { CachedRepo, LoadProgress, ModelInfo } from '../protocol/index.js';
import { fmtBytes } from './format.js';
import { useApp } from './store.js';
import { trainer } from './worker.js';

/** Where a hub model's files came from, for the status line. */
function hubNote(h: NonNullable<ModelInfo['hub']>): string {
  const parts: string[] = [];
  if (h.downloadedFiles === 0 && h.uncachedFiles === 0) parts.push('loaded from browser cache');
  else if (h.downloadedFiles > 0)
    parts.push(`downloaded ${fmtBytes(h.downloadedBytes)} (${h.downloadedFiles} files, now kept in the browser cache)${h.cachedFiles ? `, ${h.cachedFiles} files loaded from browser cache` : ''}`);
  if (h.uncachedFiles) parts.push(`${h.uncachedFiles} files read from the network and not cached: ${h.note ?? 'no browser cache'}`);
  return parts.join('; ');
}

export function ModelPanel() {
  const { model, set } = useApp();
  const [repo, setRepo] = useState('');
  const [endpoint, setEndpoint] = useState(HF_ENDPOINT);
  const [cached, setCached] = useState<CachedRepo[]>([]);
  const refreshCached = () => void trainer().cachedModels().then(setCached, () => setCached([]));
  useEffect(refreshCached, [model.status]);
  const load = async (source: Parameters<ReturnType<typeof trainer>['loadModel']>[0]) => {
    set({ model: { status: 'loading', progress: 0 } });
    // Progress arrives on the callback's own message port, so a last report can land after the result.
    let done = false;
    const onProgress = (p: LoadProgress) => done || set({ model: { status: 'loading', progress: p.totalBytes ? p.loadedBytes / p.totalBytes : 0, message: p.stage } });
    try {
      const info = await trainer().loadModel(source, Comlink.proxy(onProgress)).finally(() => (done = true));
      set({ model: { status: 'ready', name: info.name, message: `${fmtBytes(info.weightBytes)} on the GPU${info.hub ? `; ${hubNote(info.hub)}` : ''}` } });
      if (info.resolutionHint < 512) useApp.getState().setConfig({ resolution: 64, minBucket: 64, maxBucket: 128 });
    } catch (e) {
      set({ model: { status: 'error', message: e instanceof Error ? e.message : String(e) } });
    }
  };
  return (
    <section aria-labelledby="model-h">
      <h2 id="model-h">1. Base model</h2>
      <div className="row">
        <button onClick={() => load({ kind: 'tiny', baseUrl: new URL('tiny/', document.baseURI).href })}>Use the tiny demo model</button>
        <input aria-label="Hugging Face repo id" placeholder="stable-diffusion-v1-5/stable-diffusion-v1-5" value={repo} onChange={(e) => setRepo(e.target.value)} />
        <button disabled={!repo.trim()} onClick={() => load({ kind: 'hub', repo: repo.trim(), endpoint: endpoint.trim() || HF_ENDPOINT })}>Load from the Hub</button>
        <label className="file">
          Or a .safetensors checkpoint
          <input type="file" accept=".safetensors" data-testid="checkpoint-input" onChange={(e) => e.target.files?.[0] && load({ kind: 'file', file: e.target.files[0], tokenizerUrl: new URL('clip-tokenizer/', document.baseURI).href })} />
        </label>
      </div>
      <details>
        <summary>Hub endpoint</summary>
        <input aria-label="Hub endpoint" value={endpoint} onChange={(e) => setEndpoint(e.target.value)} /> <small>a mirror or local server answering /&lt;repo&gt;/resolve/&lt;revision&gt;/&lt;file&gt; with CORS; files are cached in this browser after the first download</small>
      </details>
      {cached.length > 0 && (
        <p data-testid="cached-models">
          Kept in this browser: {cached.map((c) => `${c.repo}${c.revision !== 'main' ? `@${c.revision}` : ''} (${fmtBytes(c.bytes)})`).join(', ')}{' '}
          <button className="link" disabled={model.status === 'loading'} onClick={() => void trainer().deleteCachedModels().then(refreshCached)}>
            Delete downloaded models
          </button>
        </p>
      )}
      <p data-testid="model-status" className={model.status === 'error' ? 'error' : ''} role={model.status === 'error' ? 'alert' : undefined}>
        {model.status === 'none' && 'No model loaded.'}
        {model.status === 'loading' && `Loading ${model.message ?? ''}… ${Math.round((model.progress ?? 0) * 100)}%`}
        {model.status === 'ready' && `Ready: ${model.name} (${model.message})`}
        {model.status === 'error' && model.message}
      </p>
    </section>
  );
}
