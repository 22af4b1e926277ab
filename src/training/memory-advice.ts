// What a run's memory forecast means on this adapter: the limits it meets, and which change of settings would bring it under them.
import { formatBytes } from '../engine/bytes.js';
import { sizeClass } from '../engine/pool.js';
import type { TrainConfig } from './config.js';
import type { MemoryEstimate } from './memory.js';

/** The adapter limits a run's buffers must respect. */
export interface BufferLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

/** One change of settings and what the forecast says it would need. */
export interface MemorySuggestion {
  /** The change in words, e.g. "resolution 384". */
  change: string;
  /** The settings to apply (merged into the current ones). */
  patch: Partial<TrainConfig>;
  peakBytes: number;
  largestBuffer: number;
}

export interface MemoryAdvice {
  /** The largest buffer as the pool allocates it (rounded up to its size class). */
  largestBufferAllocated: number;
  /** What is wrong, in words; null when the forecast fits. */
  warning: string | null;
  /** Changes that each bring the forecast under the limits, smallest change first; empty when it fits. */
  suggestions: MemorySuggestion[];
  /** Whether changes were looked for (not during a run). */
  checked: boolean;
}

/** WebGPU does not say how much memory a GPU has; past this, most consumer cards (8 GiB) run out. */
export const COMMON_GPU_BYTES = 8 * 2 ** 30;

/** Forecasts are rough: one decimal ("8.0 GiB", "640.3 MiB"). */
const gib = (b: number) => formatBytes(b, { digits: 1 });
const down64 = (x: number) => Math.floor(x / 64) * 64;

/** Single changes worth trying, mildest first (each costs one meta-device forecast). */
function candidates(c: TrainConfig): MemorySuggestion[] {
  const out: Omit<MemorySuggestion, 'peakBytes' | 'largestBuffer'>[] = [];
  if (!c.gradientCheckpointing) out.push({ change: 'gradient checkpointing on', patch: { gradientCheckpointing: true } });
  if (c.batchSize > 1) {
    const accum = c.batchSize * c.gradAccumulation;
    out.push({ change: `batch size 1 with gradient accumulation ${accum} (same effective batch)`, patch: { batchSize: 1, gradAccumulation: accum } });
  }
  if (c.networkDim > 4) {
    const dim = Math.max(4, c.networkDim >> 1);
    const alpha = c.networkAlpha * (dim / c.networkDim);
    out.push({ change: `network dim ${dim} (alpha ${alpha}, same scale)`, patch: { networkDim: dim, networkAlpha: alpha, ...(c.convDim > dim ? { convDim: dim, convAlpha: c.convAlpha * (dim / c.convDim) } : {}) } });
  }
  // A few sizes, not every step of 64: each forecast of SD 1.5 takes a second or two.
  const sizes = [...new Set([c.resolution - 128, down64(c.resolution * 0.75), down64(c.resolution * 0.5)])].filter((r) => r >= 64 && r < c.resolution).sort((a, b) => b - a);
  for (const r of sizes) out.push({ change: `resolution ${r}`, patch: { resolution: r } });
  return out.map((s) => ({ ...s, peakBytes: 0, largestBuffer: 0 }));
}

/**
 * Judge a forecast against the adapter's per-buffer limits (after the pool's size-class rounding)
 * and against {@link COMMON_GPU_BYTES}; when it does not fit, re-run the forecast for each single
 * change of checkpointing, batch, rank and resolution and keep those that fit (resolution: only the
 * largest that fits). If none does alone, try them all together. Without `estimate` (a run is
 * going on and forecasts would hold up its steps) only the warning is given.
 */
export function adviseMemory(estimate: ((c: TrainConfig) => MemoryEstimate) | null, c: TrainConfig, e: MemoryEstimate, limits: BufferLimits, budgetBytes = COMMON_GPU_BYTES): MemoryAdvice {
  const bufferLimit = Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize);
  const fits = (x: MemoryEstimate) => sizeClass(x.largestBuffer) <= bufferLimit && x.peakBytes <= budgetBytes;
  const largestBufferAllocated = sizeClass(e.largestBuffer);
  if (fits(e)) return { largestBufferAllocated, warning: null, suggestions: [], checked: true };
  const warning =
    largestBufferAllocated > bufferLimit
      ? `One buffer needs ${gib(largestBufferAllocated)} but this GPU allows ${gib(bufferLimit)} per buffer, so the run cannot start`
      : `This needs about ${gib(e.peakBytes)} of GPU memory, more than most ${gib(budgetBytes)} cards have`;
  const suggestions: MemorySuggestion[] = [];
  if (!estimate) return { largestBufferAllocated, warning, suggestions, checked: false };
  let resolutionFound = false;
  for (const s of candidates(c)) {
    if (resolutionFound && 'resolution' in s.patch) continue;
    const x = estimate({ ...c, ...s.patch });
    if (!fits(x)) continue;
    suggestions.push({ ...s, peakBytes: x.peakBytes, largestBuffer: x.largestBuffer });
    if ('resolution' in s.patch) resolutionFound = true;
  }
  if (!suggestions.length) {
    const all = candidates(c);
    const patch = Object.assign({}, ...all.map((s) => s.patch)) as Partial<TrainConfig>;
    if (all.length) {
      const x = estimate({ ...c, ...patch });
      if (fits(x)) suggestions.push({ change: all.filter((s, i) => !('resolution' in s.patch) || i === all.length - 1).map((s) => s.change).join(', '), patch, peakBytes: x.peakBytes, largestBuffer: x.largestBuffer });
    }
  }
  return { largestBufferAllocated, warning, suggestions, checked: true };
}
