// The page: the WebGPU check, then the panels (model, images, settings, training and result, try it).
import { useEffect } from 'react';
import { DatasetPanel } from './DatasetPanel.js';
import { ModelPanel } from './ModelPanel.js';
import { recoverLora } from './recovery.js';
import { restoreSavesList } from './saves-sync.js';
import { Settings } from './Settings.js';
import { useApp } from './store.js';
import { TrainPanel } from './TrainPanel.js';
import { TryPanel } from './TryPanel.js';
import { trainer } from './worker.js';
import './app.css';

export function App() {
  const gpu = useApp((s) => s.gpu);
  const runStatus = useApp((s) => s.run.status);
  useEffect(() => {
    const { set } = useApp.getState();
    // The worker opens the one GPU device; a page without WebGPU is told so at once (its worker may still see one).
    if (!navigator.gpu) return set({ gpu: { status: 'missing', message: 'WebGPU is not available: navigator.gpu is undefined in this browser.' } });
    trainer()
      .adapter()
      .then((a) => set({ gpu: { status: 'ok', description: `${a.description || a.vendor || 'GPU'}${a.isFallback ? ' (software fallback)' : ''}`, software: a.software } }))
      .catch((e: unknown) => set({ gpu: { status: 'missing', message: e instanceof Error ? e.message : String(e) } }));
  }, []);
  useEffect(() => {
    void recoverLora().then((l) => l && !useApp.getState().lora && useApp.setState({ lora: { bytes: l.bytes, step: l.step, runName: l.runName, recovered: true, demo: l.demo } }));
    void restoreSavesList(); // the last run's saves list, validation curve and per-image losses (OPFS)
  }, []);
  useEffect(() => {
    if (runStatus !== 'running' && runStatus !== 'paused') return;
    const warn = (e: BeforeUnloadEvent) => e.preventDefault();
    window.addEventListener('beforeunload', warn);
    return () => window.removeEventListener('beforeunload', warn);
  }, [runStatus]);

  if (gpu.status === 'missing')
    return (
      <main className="nogpu">
        <h1>LoRASmith needs WebGPU</h1>
        <p role="alert">{gpu.message}</p>
        <p>Chrome and Edge 113 or newer have it on by default on Windows, macOS and ChromeOS; on Linux enable chrome://flags/#enable-unsafe-webgpu (and Vulkan). Firefox 141+ and Safari 26+ also support it.</p>
      </main>
    );
  return (
    <main>
      <header>
        <h1>LoRASmith</h1>
        <p>Train a Stable Diffusion 1.x LoRA on your own GPU. Your images never leave this machine.</p>
        <p className="gpu" data-testid="adapter">{gpu.status === 'ok' ? `GPU: ${gpu.description}` : 'Checking for WebGPU…'}</p>
        {gpu.status === 'ok' && gpu.software && (
          <p className="summary warn" data-testid="adapter-warning">
            This is a software adapter: the GPU is emulated on the CPU, so training will be very slow. The tiny demo model works for trying the page; a full-size SD 1.5 step can take most of an hour. Use a browser with a hardware GPU for real runs.
          </p>
        )}
      </header>
      <ModelPanel />
      <DatasetPanel />
      <Settings />
      <TrainPanel />
      <TryPanel />
    </main>
  );
}
