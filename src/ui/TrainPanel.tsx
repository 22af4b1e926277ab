// Steps 4 and 5: start/pause/resume/stop, the live charts and previews, and the LoRA to download.
import { useState } from 'react';
import * as Comlink from 'comlink';
import { Chart } from './Chart.js';
import { fmtSize } from './format.js';
import { keepLora } from './recovery.js';
import { useApp } from './store.js';
import { trainer } from './worker.js';

/** Turn a preview's RGBA bytes into a PNG object URL (replacing the previous one). */
async function showSample(img: { width: number; height: number; data: Uint8ClampedArray }, step: number, prompt: string) {
  const canvas = new OffscreenCanvas(img.width, img.height);
  canvas.getContext('2d')!.putImageData(new ImageData(img.data as Uint8ClampedArray<ArrayBuffer>, img.width, img.height), 0, 0);
  const url = URL.createObjectURL(await canvas.convertToBlob({ type: 'image/png' }));
  const prev = useApp.getState().sample;
  if (prev) URL.revokeObjectURL(prev.url);
  useApp.setState({ sample: { url, step, prompt } });
}

export function TrainPanel() {
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
            step {last.step} / {last.totalSteps} · loss {last.loss.toFixed(4)} (smoothed {last.smoothLoss.toFixed(4)}) · {last.stepsPerSec.toFixed(2)} steps/s · ETA {Math.round(last.etaMs / 1000)} s · GPU {fmtSize(last.heldBytes)} held, peak {fmtSize(last.peakHeldBytes)}{s.memory ? ` (forecast ${fmtSize(s.memory.peakBytes)})` : ''}
          </p>
        </div>
      )}
      <Chart title="Loss" testId="loss-chart" x={x} log={logScale} series={[{ label: 'loss', values: s.metrics.map((m) => m.loss), color: '#9bb' }, { label: 'smoothed', values: s.metrics.map((m) => m.smoothLoss), color: '#c33' }]} />
      <Chart
        title="Learning rate"
        exponent
        x={x}
        series={[
          { label: 'U-Net LR', values: s.metrics.map((m) => m.lrUnet), color: '#36c' },
          ...(s.metrics.some((m) => m.lrTextEncoder > 0) ? [{ label: 'text encoder LR', values: s.metrics.map((m) => m.lrTextEncoder), color: '#c80' }] : []),
        ]}
      />
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
