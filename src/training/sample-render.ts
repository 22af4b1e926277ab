// Trying a LoRA: open the request's LoRA (the run's network or a kohya file) and render one image per strength from the same seed.
import { Rng } from '../engine/rng.js';
import { atStrength, loadInferenceLora } from '../model/lora-apply.js';
import type { Adapter } from '../model/layers.js';
import type { Pipeline } from '../model/pipeline.js';
import { RenderCancelled, sampleImage, type RgbaImage } from '../model/sampler.js';
import { alphasCumprod, type Prediction } from './noise.js';
import { checkSampleRequest, type SampleLora, type SampleProgress, type SampleRequest, type StrengthImage } from './sample-settings.js';
import type { Trainer } from './trainer.js';

/** How the model was trained, as sampling needs it: prediction type, noise schedule, CLIP skip. */
export interface SampleModelSettings {
  prediction: Prediction;
  alphasCumprod: Float64Array;
  clipSkip: number;
}

/**
 * Render the request once per strength (repeated strengths render once), each from the same starting
 * noise and the same ancestral noise, so the images differ by the LoRA alone. `lora` is the adapters
 * at strength 1 (null: the base model only, strengths must all be 0). An aborted `signal` stops it
 * after the current denoising step: it rejects with "Cancelled at step k of n" (and which image, of several).
 */
export async function renderStrengths(
  p: Pipeline,
  req: Omit<SampleRequest, 'lora'>,
  lora: { unet: Adapter | null; te: Adapter | null } | null,
  m: SampleModelSettings,
  onProgress?: (p: SampleProgress) => void,
  signal?: AbortSignal,
): Promise<StrengthImage[]> {
  checkSampleRequest(req);
  if (!lora && req.strengths.some((s) => s !== 0)) throw new Error('No LoRA to apply: choose the trained LoRA or a LoRA file, or render at strength 0 (the base model) only');
  const seed = new Rng(req.seed);
  const noise = seed.fork('sample-noise').normals(4 * (req.height / 8) * (req.width / 8));
  const done = new Map<number, RgbaImage>();
  const out: StrengthImage[] = [];
  for (const [image, strength] of req.strengths.entries()) {
    const img = done.get(strength) ?? (await sampleImage(p, {
      ...req, noise, alphasCumprod: m.alphasCumprod, prediction: m.prediction, clipSkip: m.clipSkip,
      rng: seed.fork('sample-ancestral'),
      adapters: { unet: atStrength(lora?.unet, strength), te: atStrength(lora?.te, strength) },
      onStep: (step, steps) => onProgress?.({ image, images: req.strengths.length, strength, step, steps }),
      signal,
    }).catch((e: unknown) => {
      throw e instanceof RenderCancelled && req.strengths.length > 1 ? new Error(`${e.message}, image ${image + 1} of ${req.strengths.length}`) : e;
    }));
    done.set(strength, img);
    out.push({ ...img, data: out.some((o) => o.data === img.data) ? img.data.slice() : img.data, strength });
  }
  return out;
}

/** A render's LoRA, opened: its adapters at strength 1, the model settings to sample with, notes, and what to free after. */
export interface OpenedLora {
  adapters: { unet: Adapter | null; te: Adapter | null } | null;
  settings: SampleModelSettings;
  notes: string[];
  dispose(): void;
}

/** SD 1.x's own settings: ε-prediction, the scaled-linear schedule, no CLIP skip (a LoRA file does not say how its base was trained). */
const BASE_SETTINGS: SampleModelSettings = { prediction: 'epsilon', alphasCumprod: alphasCumprod(false), clipSkip: 1 };

/**
 * Open the request's LoRA on this model: the run's network as it is now (no dropout; sampled with
 * the run's prediction type, schedule and CLIP skip), or a kohya file uploaded for this render.
 */
export async function openSampleLora(p: Pipeline, lora: SampleLora, trainer: Trainer | null): Promise<OpenedLora> {
  const none = { notes: [] as string[], dispose: () => {} };
  if (lora.source === 'none') return { adapters: null, settings: BASE_SETTINGS, ...none };
  if (lora.source === 'trained') {
    if (!trainer) throw new Error('No trained LoRA here yet: train one first, or drop a LoRA file to try');
    const c = trainer.config;
    const net = trainer.lora;
    const settings = { prediction: c.prediction, alphasCumprod: alphasCumprod(c.zeroTerminalSnr), clipSkip: c.clipSkip };
    return { adapters: { unet: net.adapter('unet'), te: net.arenas.te ? net.adapter('te') : null }, settings, ...none };
  }
  if (!(lora.bytes instanceof Uint8Array) || !lora.bytes.length) throw new Error(`${lora.name ?? 'The LoRA file'} is empty: drop a kohya-format .safetensors LoRA`);
  const backend = p.unet.weights.get('conv_in.weight').backend;
  const f = await loadInferenceLora(backend, p, lora.bytes, lora.name ?? 'The LoRA file');
  const settings = fileSettings(f.metadata);
  const said = settings === BASE_SETTINGS ? [] : [`${lora.name ?? 'The LoRA file'} was trained with ${settings.prediction === 'v_prediction' ? 'v-prediction' : 'ε-prediction'} and CLIP skip ${settings.clipSkip} (its metadata): rendered so`];
  return { adapters: { unet: f.unet, te: f.te }, settings, notes: [...f.notes, ...said], dispose: () => f.dispose() };
}

/** The prediction type and CLIP skip a file's metadata records (modelspec.prediction_type, ss_v_parameterization, ss_clip_skip); else SD 1.x's. */
function fileSettings(meta: Record<string, string>): SampleModelSettings {
  const v = meta['modelspec.prediction_type'] === 'v' || meta['ss_v_parameterization'] === 'True';
  const skip = Number(meta['ss_clip_skip']);
  const clipSkip = Number.isInteger(skip) && skip >= 1 && skip <= 12 ? skip : 1;
  return !v && clipSkip === 1 ? BASE_SETTINGS : { ...BASE_SETTINGS, prediction: v ? 'v_prediction' : 'epsilon', clipSkip };
}
