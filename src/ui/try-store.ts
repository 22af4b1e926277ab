// The Try-it panel's state (zustand): its settings survive a reload; dropped LoRA files, renders and progress stay in memory.
import { create } from 'zustand';
import { persist } from 'zustand/middleware';
import type { ImageSettings } from '../protocol/index.js';
import { TRY_DEFAULTS, type TrySettings } from './try-settings.js';

/** A rendered image on the page: its PNG (settings in its text chunks) as an object URL. */
export interface TryImage {
  url: string;
  png: Uint8Array;
  settings: ImageSettings;
}

/** A LoRA file dropped on the panel (from this run, another run or another trainer). */
export interface DroppedLora {
  name: string;
  bytes: Uint8Array;
}

export interface TryState {
  settings: TrySettings;
  /** Dropped kohya LoRA files, in the order dropped; the grid compares them as columns beside the run's saves. */
  files: DroppedLora[];
  /** Which LoRA the side-by-side render uses: the run's latest ('run') or a dropped file by name. */
  use: 'run' | string;
  /** What the worker is rendering, step by step; null when idle. */
  progress: { label: string; image: number; images: number; step: number; steps: number } | null;
  /** The last side-by-side render: the base model and the LoRA from the same seed. */
  pair: { base: TryImage; lora: TryImage } | null;
  /** The last X/Y grid: column labels, row strengths, images[row][column]. */
  grid: { columns: string[]; strengths: number[]; images: TryImage[][] } | null;
  /** What the worker said about the LoRAs of the last render (modules skipped, settings read from the file). */
  notes: string[];
  /** The last render's failure or a refused file, in words. */
  message: string | null;
  set(p: Partial<Omit<TryState, 'set' | 'setSettings'>>): void;
  setSettings(p: Partial<TrySettings>): void;
}

/** Free the object URLs of images no longer shown. */
export function revokeImages(images: (TryImage | undefined)[]): void {
  for (const i of images) if (i) URL.revokeObjectURL(i.url);
}

export const useTry = create<TryState>()(
  persist(
    (set) => ({
      settings: TRY_DEFAULTS,
      files: [],
      use: 'run',
      progress: null,
      pair: null,
      grid: null,
      notes: [],
      message: null,
      set: (p) => set(p),
      setSettings: (p) => set((s) => ({ settings: { ...s.settings, ...p } })),
    }),
    {
      name: 'lorasmith-try',
      partialize: (s) => ({ settings: s.settings }),
      // Fields added since the settings were saved take their defaults.
      merge: (saved, current) => ({ ...current, settings: { ...TRY_DEFAULTS, ...((saved as { settings?: Partial<TrySettings> } | undefined)?.settings ?? {}) } }),
    },
  ),
);
