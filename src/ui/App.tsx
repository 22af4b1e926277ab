// Top-level layout. For now: WebGPU detection and the adapter report (the full UI is its own piece of work).
import { useEffect, useState } from 'react';
import { acquireGpu, type AdapterReport } from '../engine/gpu.js';

type GpuState = { status: 'checking' } | { status: 'ok'; adapter: AdapterReport } | { status: 'missing'; message: string };

export function App() {
  const [gpu, setGpu] = useState<GpuState>({ status: 'checking' });
  useEffect(() => {
    acquireGpu()
      .then((g) => setGpu({ status: 'ok', adapter: g.adapter }))
      .catch((e: unknown) => setGpu({ status: 'missing', message: e instanceof Error ? e.message : String(e) }));
  }, []);
  return (
    <main>
      <h1>LoRASmith</h1>
      <p>Train Stable Diffusion LoRAs on your own GPU. Nothing is uploaded.</p>
      {gpu.status === 'checking' && <p>Checking for WebGPU…</p>}
      {gpu.status === 'missing' && <p role="alert">{gpu.message}</p>}
      {gpu.status === 'ok' && (
        <p data-testid="adapter">
          GPU: {gpu.adapter.description || gpu.adapter.vendor || 'unknown'} {gpu.adapter.isFallback ? '(software fallback)' : ''}
        </p>
      )}
    </main>
  );
}
