// Which LoRA each Try-it render asks the worker for: the run's in the worker or its bytes after a reload, the saves and dropped files as grid columns.
import { beforeEach, describe, expect, it } from 'vitest';
import { chosenLora, gridLoras, runLora } from './try-render.js';
import { useTry } from './try-store.js';
import { useApp } from './store.js';
import type { RunMetrics } from '../protocol/index.js';

const bytes = (n: number) => new Uint8Array([n]);

describe('try-it LoRA choices', () => {
  beforeEach(() => {
    useApp.setState({ lora: null, saves: [], run: { status: 'idle' }, metrics: [] });
    useTry.setState({ files: [], use: 'run' });
  });

  it('uses the network a paused or finished run left in the worker, and sends the bytes otherwise', () => {
    expect(runLora()).toBeNull();
    const file = { source: 'file', bytes: bytes(1), name: 'cat.safetensors' };
    useApp.setState({ lora: { bytes: bytes(1), step: 12, runName: 'cat' }, run: { status: 'done', state: { phase: 'done', since: 0, step: 12, savedStep: 12 } } });
    expect(runLora()).toEqual({ label: 'cat step 12', lora: { source: 'trained' } });
    // Paused at step 15 after the save at 12: the worker's network is the one of step 15.
    useApp.setState({ run: { status: 'paused', state: { phase: 'paused', since: 0 } }, metrics: [{ step: 15 } as RunMetrics] });
    expect(runLora()).toEqual({ label: 'cat step 15', lora: { source: 'trained' } });
    // A later run stopped before its first step: the worker's network is not this LoRA.
    useApp.setState({ run: { status: 'done', state: { phase: 'done', since: 0, step: 0, savedStep: 0, stopped: true } }, metrics: [] });
    expect(runLora()).toEqual({ label: 'cat step 12', lora: file });
    useApp.setState({ lora: { bytes: bytes(1), step: 12, runName: 'cat', recovered: true }, run: { status: 'idle' } });
    expect(runLora()).toEqual({ label: 'cat step 12', lora: file });
  });

  it('takes a dropped file when chosen, and lists the saves by step, then the files, as grid columns', () => {
    useApp.setState({ lora: { bytes: bytes(3), step: 30, runName: 'cat' }, run: { status: 'done', state: { phase: 'done', since: 0, step: 30, savedStep: 30 } } });
    expect(gridLoras().map((l) => l.label)).toEqual(['cat step 30']);
    useApp.setState({ saves: [{ step: 10, bytes: bytes(1) }, { step: 30, bytes: bytes(3) }] });
    useTry.setState({ files: [{ name: 'other.safetensors', bytes: bytes(9) }], use: 'other.safetensors' });
    expect(chosenLora()).toEqual({ label: 'other.safetensors', lora: { source: 'file', bytes: bytes(9), name: 'other.safetensors' } });
    const cols = gridLoras();
    expect(cols.map((l) => l.label)).toEqual(['step 10', 'step 30', 'other.safetensors']);
    expect(cols[0]!.lora).toEqual({ source: 'file', bytes: bytes(1), name: 'cat-10.safetensors' });
    useTry.setState({ use: 'run' });
    expect(chosenLora()?.lora).toEqual({ source: 'trained' });
  });
});
