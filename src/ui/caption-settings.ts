// The auto-caption settings the page keeps between visits (tagger repository, endpoint, thresholds), apart from the training settings.
import { create } from 'zustand';
import { persist } from 'zustand/middleware';
import { DEFAULT_CHARACTER_THRESHOLD, DEFAULT_TAG_THRESHOLD, DEFAULT_TAGGER_REPO, HF_ENDPOINT } from '../protocol/index.js';

export interface CaptionSettings {
  repo: string;
  endpoint: string;
  /** As typed: checked by the worker when captioning starts. */
  threshold: number;
  characterThreshold: number;
  set(p: Partial<Omit<CaptionSettings, 'set'>>): void;
}

export const CAPTION_DEFAULTS = { repo: DEFAULT_TAGGER_REPO, endpoint: HF_ENDPOINT, threshold: DEFAULT_TAG_THRESHOLD, characterThreshold: DEFAULT_CHARACTER_THRESHOLD };

export const useCaptionSettings = create<CaptionSettings>()(
  persist((set) => ({ ...CAPTION_DEFAULTS, set: (p) => set(p) }), {
    name: 'lorasmith-caption-settings',
    partialize: ({ repo, endpoint, threshold, characterThreshold }) => ({ repo, endpoint, threshold, characterThreshold }),
  }),
);
