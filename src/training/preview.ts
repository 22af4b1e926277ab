// Preview images of a run (not training examples): their prompt, and one image rendered with the LoRA as trained so far.
import type { LoraNetwork } from '../model/lora.js';
import type { Pipeline } from '../model/pipeline.js';
import { sampleImage, type RgbaImage } from '../model/sampler.js';
import type { TrainConfig } from './config.js';

/** The prompt of the preview images: the configured one, else the trigger word and the first caption. */
export function previewPrompt(c: TrainConfig, firstCaption: string): string {
  if (c.samplePrompt.trim()) return c.samplePrompt;
  return c.triggerWord && !firstCaption.startsWith(c.triggerWord) ? [c.triggerWord, firstCaption].filter(Boolean).join(', ') : firstCaption;
}

/**
 * A preview at the training resolution with the LoRA as it is now (its adapters without dropout),
 * from the given latent noise [C, r/f, r/f]: the same noise every time makes a run's previews comparable.
 */
export function renderPreview(p: Pipeline, lora: LoraNetwork, c: TrainConfig, prompt: string, noise: Float32Array, alphasCumprod: Float64Array): Promise<RgbaImage> {
  return sampleImage(p, {
    prompt,
    width: c.resolution,
    height: c.resolution,
    steps: Math.max(1, c.sampleSteps),
    guidance: c.sampleGuidance,
    noise,
    alphasCumprod,
    prediction: c.prediction,
    clipSkip: c.clipSkip,
    adapters: { unet: lora.adapter('unet'), te: lora.arenas.te ? lora.adapter('te') : null },
  });
}
