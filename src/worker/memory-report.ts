// The worker's GPU memory figures for the page: the forecast against the adapter's limits, and what the pool holds during a run.
import type { Backend } from '../engine/backend.js';
import type { Gpu } from '../engine/gpu.js';
import type { PoolStats } from '../engine/pool.js';
import type { Pipeline } from '../model/pipeline.js';
import type { TrainConfig } from '../training/config.js';
import { estimateTrainingMemory } from '../training/memory.js';
import { adviseMemory } from '../training/memory-advice.js';
import type { MemoryReport } from '../protocol/index.js';
import { isSoftwareAdapter } from './adapter.js';

/** What the page can know of the device's memory: WebGPU reports none; the browser gives the RAM, rounded and capped at 8 GiB. */
function deviceMemoryNote(gpu: Gpu): string {
  const ram = (globalThis.navigator as { deviceMemory?: number } | undefined)?.deviceMemory;
  const soft = isSoftwareAdapter(gpu.adapter);
  const ramNote = ram ? `this computer reports about ${ram} GiB of RAM (browsers round this figure and may cap it)` : 'the browser does not say how much RAM this computer has';
  return `WebGPU does not report how much memory the GPU has; ${ramNote}${soft ? ', which this software adapter uses as GPU memory' : ' (integrated GPUs share it)'}`;
}

/** The forecast against the adapter; `advise` re-forecasts changes that would fit (seconds for SD 1.5, so not during a run). */
function memoryReport(pipeline: Pipeline, gpu: Gpu, c: TrainConfig, advise: boolean): MemoryReport {
  const models = { unet: pipeline.unet.config, clip: pipeline.clip.config, vae: pipeline.vae.config };
  const { maxBufferSize, maxStorageBufferBindingSize } = gpu.adapter.limits;
  const forecast = (x: TrainConfig) => estimateTrainingMemory(models, x, { maxBindingBytes: Math.min(maxBufferSize, maxStorageBufferBindingSize) });
  const e = forecast(c);
  const advice = adviseMemory(advise ? forecast : null, c, e, { maxBufferSize, maxStorageBufferBindingSize });
  return { ...e, maxBindingBytes: maxStorageBufferBindingSize, maxBufferBytes: maxBufferSize, deviceMemory: deviceMemoryNote(gpu), ...advice };
}

/**
 * The last forecast, kept: it runs the training step on the meta device (1-3 s for SD 1.5 on a slow
 * CPU) and the page asks at every settings edit. One made during a run (without advice) is redone after it.
 */
export class MemoryForecasts {
  private memo: { key: string; report: MemoryReport; duringRun: boolean } | null = null;

  report(pipeline: Pipeline, gpu: Gpu, c: TrainConfig, running: boolean): MemoryReport {
    const key = JSON.stringify([pipeline.name, c.resolution, c.batchSize, c.gradAccumulation, c.networkDim, c.convDim, c.trainTextEncoder, c.gradientCheckpointing, c.optimizer, c.clipSkip, c.cacheTextEncoderOutputs]);
    if (this.memo?.key !== key || (!running && this.memo.duringRun)) this.memo = { key, report: memoryReport(pipeline, gpu, c, !running), duringRun: running };
    return this.memo.report;
  }

  /** Forget the forecast (another model, or the device is gone). */
  clear(): void {
    this.memo = null;
  }
}

/**
 * The device's held bytes (live + cached) and their peak since `start`; pools without those counters
 * give live + free and the live peak.
 */
export function heldBytesMeter(backend: Backend): () => { heldBytes: number; peakHeldBytes: number } {
  backend.resetPeak();
  let runPeak = 0;
  return () => {
    const s = backend.pool() as PoolStats & { heldBytes?: number; peakHeldBytes?: number };
    const held = s.heldBytes ?? s.liveBytes + s.freeBytes;
    runPeak = Math.max(runPeak, held, s.peakHeldBytes ?? s.peakLiveBytes);
    return { heldBytes: held, peakHeldBytes: runPeak };
  };
}
