// Store subscriptions in Chromium: a metric arriving re-renders no settings input, and an edit re-renders only its own field.
import { act, Profiler, useState } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunMetrics } from '../protocol/index.js';
import { Input, type Note } from './Settings.js';
import { ADVANCED, BASIC } from './settings-fields.js';
import { chooseConfig, useApp } from './store.js';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const FIELDS = [...BASIC, ...ADVANCED];

const metric = (step: number): RunMetrics => ({
  step, totalSteps: 10, epoch: 1, loss: 0.1, smoothLoss: 0.1, lrUnet: 1e-4, lrTextEncoder: 0, stepsPerSec: 1, imagesPerSec: 1, elapsedMs: step * 1000, etaMs: 0, gpuBytes: 0, heldBytes: 0, peakHeldBytes: 0,
});

/** Every form input under its own Profiler: `renders` counts commits per field key. */
function Form({ renders }: { renders: Map<string, number> }) {
  const [note, setNote] = useState<Note>(null);
  const count = (id: string) => renders.set(id, (renders.get(id) ?? 0) + 1);
  return (
    <>
      {FIELDS.map((f) => (
        <Profiler key={f.key} id={f.key} onRender={count}>
          <Input f={f} note={note?.key === f.key ? note : null} setNote={setNote} />
        </Profiler>
      ))}
    </>
  );
}

describe('settings inputs subscribe to their own field', () => {
  let root: Root;
  let el: HTMLDivElement;
  const renders = new Map<string, number>();
  beforeEach(async () => {
    el = document.body.appendChild(document.createElement('div'));
    root = createRoot(el);
    await act(async () => root.render(<Form renders={renders} />));
    expect(renders.size).toBe(FIELDS.length);
    renders.clear();
  });
  afterEach(() => {
    act(() => root.unmount());
    el.remove();
  });

  it('a metric arriving re-renders none of them', async () => {
    for (let i = 1; i <= 3; i++) await act(async () => useApp.setState((s) => ({ metrics: [...s.metrics, metric(i)] })));
    await act(async () => useApp.setState({ memory: null, runPlan: null, run: { status: 'running' } }));
    expect(useApp.getState().metrics).toHaveLength(3);
    expect([...renders.keys()]).toEqual([]);
  });

  it('an edit re-renders only the field edited', async () => {
    const batch = useApp.getState().config.batchSize;
    await act(async () => chooseConfig({ batchSize: batch + 1 }));
    expect((el.querySelector('#cfg-batchSize') as HTMLInputElement).value).toBe(String(batch + 1));
    expect([...renders.keys()]).toEqual(['batchSize']);
    renders.clear();
    await act(async () => useApp.setState({ errors: { networkDim: 'Network dim must be a whole number between 1 and 1024 (got 0.5)' } }));
    expect(el.querySelector('[data-testid="error-networkDim"]')?.textContent).toContain('between 1 and 1024');
    expect([...renders.keys()]).toEqual(['networkDim']);
  });
});
