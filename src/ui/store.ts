// Page state (zustand): model, dataset, settings (persisted), run metrics and the latest LoRA.
import { create } from 'zustand';
import { persist } from 'zustand/middleware';
import { DEFAULT_CONFIG, type TrainConfig } from '../training/config.js';
import type { DatasetReport, MemoryReport, RunPlan, StepMetrics } from '../protocol/index.js';

export interface DatasetEntry {
  name: string;
  url: string;
  bytes: ArrayBuffer;
  caption: string;
}

export interface AppState {
  gpu: { status: 'checking' } | { status: 'ok'; description: string } | { status: 'missing'; message: string };
  model: { status: 'none' | 'loading' | 'ready' | 'error'; name?: string; message?: string; progress?: number };
  dataset: DatasetEntry[];
  report: DatasetReport | null;
  nonImages: { name: string; reason: string }[];
  config: TrainConfig;
  errors: Record<string, string>;
  plan: RunPlan | null;
  memory: MemoryReport | null;
  run: { status: 'idle' | 'running' | 'paused' | 'done' | 'error'; message?: string; log?: string };
  metrics: StepMetrics[];
  /** The latest saved LoRA; `recovered` when it comes from an earlier session's browser storage. */
  lora: { bytes: Uint8Array; step: number; runName: string; recovered?: boolean } | null;
  /** The latest preview image (a PNG object URL). */
  sample: { url: string; step: number; prompt: string } | null;
  set(p: Partial<AppState>): void;
  setConfig(p: Partial<TrainConfig>): void;
}

export const useApp = create<AppState>()(
  persist(
    (set) => ({
      gpu: { status: 'checking' },
      model: { status: 'none' },
      dataset: [],
      report: null,
      nonImages: [],
      config: { ...DEFAULT_CONFIG, resolution: 64, minBucket: 64, maxBucket: 128, baseSteps: 200, sampleSteps: 8 },
      errors: {},
      plan: null,
      memory: null,
      run: { status: 'idle' },
      metrics: [],
      lora: null,
      sample: null,
      set: (p) => set(p),
      setConfig: (p) => set((s) => ({ config: { ...s.config, ...p } })),
    }),
    // Settings survive a reload; images and runs stay in memory only.
    // Fields added since the settings were saved take their defaults.
    {
      name: 'lorasmith-settings',
      partialize: (s) => ({ config: s.config }),
      merge: (saved, current) => ({ ...current, config: { ...current.config, ...((saved as { config?: Partial<TrainConfig> } | undefined)?.config ?? {}) } }),
    },
  ),
);
