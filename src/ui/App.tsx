// The page: model, dataset, settings with a live summary, and the training dashboard with download.
import { useEffect, useMemo, useState } from 'react';
import * as Comlink from 'comlink';
import { acquireGpu } from '../engine/gpu.js';
import { useApp } from './store.js';
import { trainer } from './worker.js';
import type { LoadProgress, ModelInfo } from '../protocol/index.js';
import { filesFrom, sortFiles, stem } from './dataset.js';
import { Chart } from './Chart.js';
import { Settings } from './Settings.js';
import { keepLora, recoverLora } from './recovery.js';
import { assignBucket, makeBuckets, type Bucket } from '../training/buckets.js';
import './app.css';

const fmtBytes = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const HF_ENDPOINT = 'https://huggingface.co';

/** Where a hub model's files came from, for the status line. */
function hubNote(h: NonNullable<ModelInfo['hub']>): string {
  const parts: string[] = [];
  if (h.downloadedFiles === 0 && h.uncachedFiles === 0) parts.push('loaded from browser cache');
  else if (h.downloadedFiles > 0)
    parts.push(`downloaded ${fmtBytes(h.downloadedBytes)} (${h.downloadedFiles} files, now kept in the browser cache)${h.cachedFiles ? `, ${h.cachedFiles} files loaded from browser cache` : ''}`);
  if (h.uncachedFiles) parts.push(`${h.uncachedFiles} files read from the network and not cached: ${h.note ?? 'no browser cache'}`);
  return parts.join('; ');
}

export function App() {
  const s = useApp();
  useEffect(() => {
    acquireGpu()
      .then((g) => s.set({ gpu: { status: 'ok', description: `${g.adapter.description || g.adapter.vendor || 'GPU'}${g.adapter.isFallback ? ' (software fallback)' : ''}` } }))
      .catch((e: unknown) => s.set({ gpu: { status: 'missing', message: e instanceof Error ? e.message : String(e) } }));
  }, []);
  useEffect(() => {
    void recoverLora().then((l) => l && !useApp.getState().lora && useApp.setState({ lora: { bytes: l.bytes, step: l.step, runName: l.runName, recovered: true } }));
  }, []);
  useEffect(() => {
    if (s.run.status !== 'running' && s.run.status !== 'paused') return;
    const warn = (e: BeforeUnloadEvent) => e.preventDefault();
    window.addEventListener('beforeunload', warn);
    return () => window.removeEventListener('beforeunload', warn);
  }, [s.run.status]);

  if (s.gpu.status === 'missing')
    return (
      <main className="nogpu">
        <h1>LoRASmith needs WebGPU</h1>
        <p role="alert">{s.gpu.message}</p>
        <p>Chrome and Edge 113 or newer have it on by default on Windows, macOS and ChromeOS; on Linux enable chrome://flags/#enable-unsafe-webgpu (and Vulkan). Firefox 141+ and Safari 26+ also support it.</p>
      </main>
    );
  return (
    <main>
      <header>
        <h1>LoRASmith</h1>
        <p>Train a Stable Diffusion 1.x LoRA on your own GPU. Your images never leave this machine.</p>
        <p className="gpu" data-testid="adapter">{s.gpu.status === 'ok' ? `GPU: ${s.gpu.description}` : 'Checking for WebGPU…'}</p>
      </header>
      <ModelPanel />
      <DatasetPanel />
      <Settings />
      <TrainPanel />
    </main>
  );
}

function ModelPanel() {
  const { model, set } = useApp();
  const [repo, setRepo] = useState('');
  const [endpoint, setEndpoint] = useState(HF_ENDPOINT);
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
      <p data-testid="model-status" className={model.status === 'error' ? 'error' : ''} role={model.status === 'error' ? 'alert' : undefined}>
        {model.status === 'none' && 'No model loaded.'}
        {model.status === 'loading' && `Loading ${model.message ?? ''}… ${Math.round((model.progress ?? 0) * 100)}%`}
        {model.status === 'ready' && `Ready: ${model.name} (${model.message})`}
        {model.status === 'error' && model.message}
      </p>
    </section>
  );
}

function DatasetPanel() {
  const { dataset, report, nonImages, set } = useApp();
  const [over, setOver] = useState(false);
  const add = async (files: File[]) => {
    const d = await sortFiles(files);
    const entries = [...useApp.getState().dataset, ...d.images.map((i) => ({ name: i.name, bytes: i.bytes, url: URL.createObjectURL(new Blob([i.bytes])), caption: d.captions.get(stem(i.name)) ?? '' }))];
    const rep = await trainer().setDataset(entries.map((e) => ({ name: e.name, bytes: e.bytes.slice(0), caption: e.caption })));
    const bad = new Set(rep.skipped.map((x) => x.name));
    set({ dataset: entries.filter((e) => !bad.has(e.name)), report: rep, nonImages: [...useApp.getState().nonImages, ...d.skipped] });
  };
  const remove = async (keep: (name: string) => boolean) => {
    const ds = useApp.getState().dataset;
    for (const d of ds) if (!keep(d.name)) URL.revokeObjectURL(d.url);
    const left = ds.filter((d) => keep(d.name));
    const rep = await trainer().setDataset(left.map((e) => ({ name: e.name, bytes: e.bytes.slice(0), caption: e.caption })));
    set({ dataset: left, report: rep, ...(left.length ? {} : { nonImages: [] }) });
  };
  const setCaption = (i: number, caption: string) => {
    const ds = dataset.map((d, j) => (j === i ? { ...d, caption } : d));
    set({ dataset: ds });
    void trainer().setCaption(ds[i]!.name, caption);
  };
  // The bucket each image will train in, with the current settings.
  const { resolution, bucketStep, minBucket, maxBucket, maxAspect, enableBuckets } = useApp((st) => st.config);
  const buckets = useMemo(() => {
    const m = new Map<string, number>();
    let grid: Bucket[] = [];
    try {
      grid = enableBuckets ? makeBuckets({ resolution, step: bucketStep, min: Math.min(minBucket, resolution), max: Math.max(maxBucket, resolution), maxAspect }) : [{ width: resolution, height: resolution }];
    } catch {
      return ''; // settings mid-edit; the settings form shows the error
    }
    for (const i of report?.images ?? []) {
      const b = assignBucket(i.width, i.height, grid);
      const k = `${b.width}x${b.height}`;
      m.set(k, (m.get(k) ?? 0) + 1);
    }
    return [...m].map(([b, n]) => `${b}: ${n}`).join(', ');
  }, [report, resolution, bucketStep, minBucket, maxBucket, maxAspect, enableBuckets]);
  const skipped = [...nonImages, ...(report?.skipped ?? [])];
  return (
    <section aria-labelledby="data-h">
      <h2 id="data-h">2. Images</h2>
      <div
        className={`drop ${over ? 'over' : ''}`}
        data-testid="dropzone"
        tabIndex={0}
        onDragOver={(e) => (e.preventDefault(), setOver(true))}
        onDragLeave={() => setOver(false)}
        onDrop={async (e) => {
          e.preventDefault();
          setOver(false);
          await add(await filesFrom(e.dataTransfer));
        }}
      >
        Drop images with .txt captions, a folder or a zip here, or
        <label className="file"> choose files<input type="file" multiple onChange={async (e) => add(await filesFrom(null, e.target.files))} /></label>
      </div>
      <p data-testid="dataset-count">
        {dataset.length} {dataset.length === 1 ? 'image' : 'images'}{skipped.length ? `, ${skipped.length} skipped` : ''}{buckets ? ` — buckets: ${buckets}` : ''}
        {dataset.length > 0 && <button className="link" onClick={() => remove(() => false)}>Clear all</button>}
      </p>
      {skipped.length > 0 && (
        <ul className="skipped" data-testid="skipped">
          {skipped.map((k) => <li key={k.name}>{k.name}: {k.reason}</li>)}
        </ul>
      )}
      <div className="grid">
        {dataset.map((d, i) => (
          <figure key={d.name}>
            <img src={d.url} alt={d.name} />
            <figcaption>
              <input aria-label={`caption of ${d.name}`} value={d.caption} onChange={(e) => setCaption(i, e.target.value)} />
              <button className="remove" aria-label={`remove ${d.name}`} title="Remove from the dataset" onClick={() => remove((n) => n !== d.name)}>×</button>
            </figcaption>
          </figure>
        ))}
      </div>
    </section>
  );
}

/** Turn a preview's RGBA bytes into a PNG object URL (replacing the previous one). */
async function showSample(img: { width: number; height: number; data: Uint8ClampedArray }, step: number, prompt: string) {
  const canvas = new OffscreenCanvas(img.width, img.height);
  canvas.getContext('2d')!.putImageData(new ImageData(img.data as Uint8ClampedArray<ArrayBuffer>, img.width, img.height), 0, 0);
  const url = URL.createObjectURL(await canvas.convertToBlob({ type: 'image/png' }));
  const prev = useApp.getState().sample;
  if (prev) URL.revokeObjectURL(prev.url);
  useApp.setState({ sample: { url, step, prompt } });
}

function TrainPanel() {
  const s = useApp();
  const [logScale, setLog] = useState(false);
  const [resume, setResume] = useState<File | null>(null);
  const last = s.metrics.at(-1);
  const start = async () => {
    const v = await trainer().validateConfig(s.config);
    if (!v.ok) return s.set({ errors: v.errors, run: { status: 'error', message: 'Fix the highlighted settings first.' } });
    if (s.model.status !== 'ready') return s.set({ run: { status: 'error', message: 'Load a base model first.' } });
    if (!s.dataset.length) return s.set({ run: { status: 'error', message: 'Add at least one image first.' } });
    s.set({ metrics: [], run: { status: 'running', log: 'Starting…' } });
    await trainer().start(
      v.config,
      Comlink.proxy({
        onMetrics: (m) => useApp.setState((st) => ({ metrics: [...st.metrics, m] })),
        onCheckpoint: (bytes, step) => {
          const runName = useApp.getState().config.runName;
          useApp.setState({ lora: { bytes, step, runName } });
          void keepLora({ bytes, step, runName, savedAt: Date.now() }).then((warn) => warn && useApp.setState((st) => ({ run: { ...st.run, log: warn } })));
        },
        onSample: (img, step, prompt) => void showSample(img, step, prompt),
        onLog: (log) => useApp.setState((st) => ({ run: { ...st.run, log } })),
        onDone: (r) => useApp.setState({ run: { status: 'done', message: r.stopped ? `Stopped at step ${r.step}; the LoRA from that step is saved.` : `Finished ${r.step} steps.` } }),
        onError: (message) => useApp.setState({ run: { status: 'error', message } }),
      }),
      resume ? new Uint8Array(await resume.arrayBuffer()) : undefined,
    ).catch((e: unknown) => s.set({ run: { status: 'error', message: e instanceof Error ? e.message : String(e) } }));
  };
  const x = s.metrics.map((m) => m.step);
  const download = () => {
    if (!s.lora) return;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([s.lora.bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
    a.download = `${s.lora.runName}.safetensors`;
    a.click();
  };
  return (
    <section aria-labelledby="train-h">
      <h2 id="train-h">4. Train</h2>
      <div className="row">
        <button onClick={start} disabled={s.run.status === 'running' || s.run.status === 'paused'}>Start training</button>
        <button onClick={() => (trainer().pause(), s.set({ run: { ...s.run, status: 'paused' } }))} disabled={s.run.status !== 'running'}>Pause</button>
        <button onClick={() => (trainer().resume(), s.set({ run: { ...s.run, status: 'running' } }))} disabled={s.run.status !== 'paused'}>Resume</button>
        <button onClick={() => trainer().stop()} disabled={s.run.status !== 'running' && s.run.status !== 'paused'}>Stop</button>
        <label><input type="checkbox" checked={logScale} onChange={(e) => setLog(e.target.checked)} /> log scale</label>
        <label className="file" title="Same network dim and targets as the earlier run">
          {resume ? `Continuing ${resume.name}` : 'Continue an earlier LoRA (optional)'}
          <input type="file" accept=".safetensors" data-testid="resume-input" onChange={(e) => setResume(e.target.files?.[0] ?? null)} />
        </label>
      </div>
      <p data-testid="run-status" role={s.run.status === 'error' ? 'alert' : undefined} className={s.run.status === 'error' ? 'error' : ''}>
        {s.run.status === 'paused' ? 'Paused. ' : ''}
        {s.run.message ?? s.run.log ?? ''}
      </p>
      {last && (
        <div>
          <progress max={last.totalSteps} value={last.step} />
          <p data-testid="step-counter">
            step {last.step} / {last.totalSteps} · loss {last.loss.toFixed(4)} (smoothed {last.smoothLoss.toFixed(4)}) · {last.stepsPerSec.toFixed(2)} steps/s · ETA {Math.round(last.etaMs / 1000)} s · GPU {fmtBytes(last.gpuBytes)}
          </p>
        </div>
      )}
      <Chart title="Loss" testId="loss-chart" x={x} log={logScale} series={[{ label: 'loss', values: s.metrics.map((m) => m.loss), color: '#9bb' }, { label: 'smoothed', values: s.metrics.map((m) => m.smoothLoss), color: '#c33' }]} />
      <Chart title="Learning rate" exponent x={x} series={[{ label: 'U-Net LR', values: s.metrics.map((m) => m.lrUnet), color: '#36c' }]} />
      {s.sample && (
        <figure className="sample" data-testid="sample">
          <img src={s.sample.url} alt={`sample at step ${s.sample.step}`} />
          <figcaption>Step {s.sample.step}: “{s.sample.prompt}”</figcaption>
        </figure>
      )}
      <h2>5. Result</h2>
      {s.lora ? (
        <div>
          {s.lora.recovered && <p data-testid="recovered">Kept from your last session: the LoRA of run “{s.lora.runName}” as saved at step {s.lora.step}.</p>}
          <button onClick={download} data-testid="download">Download {s.lora.runName}.safetensors (step {s.lora.step})</button>
          <p>Put it in AUTOMATIC1111's or Forge's <code>models/Lora</code> folder and write <code>&lt;lora:{s.lora.runName}:0.8&gt;</code>{s.config.triggerWord ? <> together with the trigger word <b>{s.config.triggerWord}</b></> : null} in the prompt; in ComfyUI use a LoraLoader node (strength 0.8 is a good start).</p>
        </div>
      ) : (
        <p>The LoRA appears here after its first save.</p>
      )}
    </section>
  );
}
