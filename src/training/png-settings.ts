// A rendered image (the page's Try-it panel, `lorasmith sample`) as a PNG file that carries its settings: AUTOMATIC1111's `parameters` text and the exact settings as JSON.
import { decode, encode } from 'fast-png';
import type { SampleRequest, SamplerKind } from './sample-settings.js';

/** The render fields a request shares with every image it renders. */
export type RenderFields = Pick<SampleRequest, 'prompt' | 'negativePrompt' | 'seed' | 'steps' | 'guidance' | 'width' | 'height' | 'sampler'>;

/** What produced one rendered image: enough to render it again. */
export interface ImageSettings extends RenderFields {
  /** The LoRA's strength (0: the base model alone). */
  strength: number;
  /** The LoRA in words: the run's name and step, or the dropped file's name; absent for the base model. */
  lora?: string;
  /** The base model's name as the page or the CLI shows it. */
  model: string;
}

/** The text chunks' keywords: A1111's "PNG Info" reads `parameters`; `lorasmith` holds the settings as JSON. */
export const PNG_KEYS = { parameters: 'parameters', settings: 'lorasmith' } as const;

const SAMPLER_NAMES: Record<SamplerKind, string> = { ddim: 'DDIM', euler: 'Euler', euler_a: 'Euler a' };

/**
 * tEXt chunks hold Latin-1 only: other characters are written as \uXXXX escapes, which JSON reads
 * back exactly (so the `lorasmith` chunk round-trips any prompt) and a person can still read.
 */
function latin1(s: string): string {
  return s.replace(/[^\u0000-\u00ff]/gu, (c) => Array.from({ length: c.length }, (_, i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`).join(''));
}

/** The settings in AUTOMATIC1111's infotext layout: prompt, `Negative prompt:` line, then `Key: value` pairs. */
export function infotext(s: ImageSettings): string {
  const pairs: [string, string | number][] = [
    ['Steps', s.steps],
    ['Sampler', SAMPLER_NAMES[s.sampler]],
    ['CFG scale', s.guidance],
    ['Seed', s.seed],
    ['Size', `${s.width}x${s.height}`],
    ['Model', s.model],
  ];
  if (s.lora) pairs.push(['Lora', s.lora], ['Lora strength', s.strength]);
  const kv = pairs.map(([k, v]) => `${k}: ${String(v).replace(/[,\n]/g, ' ')}`).join(', ');
  return [s.prompt, ...(s.negativePrompt ? [`Negative prompt: ${s.negativePrompt}`] : []), kv].join('\n');
}

/** Encode RGBA pixels as a PNG with the settings in two tEXt chunks (fast-png writes them with their CRCs). */
export function settingsPng(img: { width: number; height: number; data: Uint8ClampedArray | Uint8Array }, s: ImageSettings): Uint8Array {
  if (img.data.length !== img.width * img.height * 4) throw new Error(`settingsPng: ${img.data.length} bytes is not RGBA ${img.width}x${img.height}`);
  const json = JSON.stringify(s).replace(/[^\u0000-\u007f]/gu, (c) => Array.from({ length: c.length }, (_, i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`).join(''));
  return encode({ width: img.width, height: img.height, data: img.data, channels: 4, depth: 8, text: { [PNG_KEYS.parameters]: latin1(infotext(s)), [PNG_KEYS.settings]: json } });
}

/** The settings a PNG of the panel carries (null when it has none), e.g. to check a download. */
export function readSettingsPng(bytes: Uint8Array): { settings: ImageSettings | null; parameters: string | null; width: number; height: number; data: Uint8Array } {
  const png = decode(bytes);
  const raw = png.text[PNG_KEYS.settings];
  return { settings: raw ? (JSON.parse(raw) as ImageSettings) : null, parameters: png.text[PNG_KEYS.parameters] ?? null, width: png.width, height: png.height, data: png.data as Uint8Array };
}
