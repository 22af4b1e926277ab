// The memory line: the forecast against the adapter's limits, what is known of the device's memory, the measured peak during a run, and changes that would fit.
import { formatBytes, type MemoryReport, type RunMetrics } from '../protocol/index.js';
import { chooseConfig, useApp } from './store.js';

const flops = (f: number) => (f >= 1e12 ? `${(f / 1e12).toFixed(2)} TFLOP` : f >= 1e9 ? `${(f / 1e9).toFixed(2)} GFLOP` : `${(f / 1e6).toFixed(1)} MFLOP`);
/** Buffer sizes against binding limits, which adapters give in whole MiB. */
const mib = (b: number) => formatBytes(b, { unit: 'MiB', digits: 0 });

function forecastText(m: MemoryReport): string {
  const cache = (m as MemoryReport & { cacheBytes?: number }).cacheBytes;
  const limit = Math.min(m.maxBindingBytes, m.maxBufferBytes);
  return (
    `Estimated GPU memory ${formatBytes(m.peakBytes)} (weights ${formatBytes(m.weightBytes)}, LoRA with gradients and optimizer state ${formatBytes(m.networkBytes)}${cache ? `, buffers cached for reuse ${formatBytes(cache)}` : ''}); ` +
    `largest buffer ${mib(m.largestBufferAllocated)} of ${mib(limit)} allowed (adapter: ${mib(m.maxBindingBytes)} per storage binding, ${mib(m.maxBufferBytes)} per buffer); ${flops(m.flopsPerStep)} per step.`
  );
}

/** The run's measured peak against the forecast; only while a run's metrics are on the page. */
function measuredText(last: RunMetrics, forecast: number | undefined): string {
  const ratio = forecast ? ` (${((last.peakHeldBytes / forecast) * 100).toFixed(0)}% of the forecast)` : '';
  return `Measured in this run: peak ${formatBytes(last.peakHeldBytes)} held on the GPU (live and cached buffers)${ratio}, ${formatBytes(last.heldBytes)} now.`;
}

export function MemoryLine() {
  const memory = useApp((s) => s.memory);
  const hasPlan = useApp((s) => !!s.runPlan);
  const last = useApp((s) => s.metrics.at(-1));
  const idle = useApp((s) => s.run.status === 'idle');
  if (!memory) return <p className="summary" data-testid="memory">{hasPlan && 'Load a model to see the GPU memory this run needs.'}</p>;
  return (
    <div className={`summary ${memory.warning ? 'warn' : ''}`} data-testid="memory" role={memory.warning ? 'alert' : undefined}>
      <p>{forecastText(memory)}</p>
      <p><small data-testid="device-memory">{memory.deviceMemory}.</small></p>
      {last && !idle && <p data-testid="memory-measured">{measuredText(last, memory.peakBytes)}</p>}
      {memory.warning && (
        <div data-testid="memory-warning">
          <p><b>{memory.warning}.</b> {memory.suggestions.length ? 'Any of these would fit:' : !memory.checked ? 'Settings that would fit are looked for when the run ends.' : 'No change of gradient checkpointing, batch size, network dim or resolution brings it under, alone or together.'}</p>
          {memory.suggestions.length > 0 && (
            <ul>
              {memory.suggestions.map((s) => (
                <li key={s.change}>
                  {s.change}: about {formatBytes(s.peakBytes)}, largest buffer {mib(s.largestBuffer)}{' '}
                  <button className="link" onClick={() => chooseConfig(s.patch)}>Apply</button>
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </div>
  );
}
