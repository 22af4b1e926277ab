// Trying a LoRA: the render request (prompt, sampler, size, strengths) and its field-by-field checks; pure values the page shares.
import { z } from 'zod';
import type { RgbaImage, SamplerKind } from '../model/sampler.js';
import { num, oneOf } from './config.js';

export type { SamplerKind };

/** The samplers, as the form lists them (model/sampler.ts implements each). */
export const SAMPLERS = ['ddim', 'euler', 'euler_a'] as const satisfies readonly SamplerKind[];

/** The LoRA a render applies: the run's network in the worker, a kohya `.safetensors` file's bytes, or none (the base model alone). */
export type SampleLora = { source: 'trained' } | { source: 'file'; bytes: Uint8Array; name?: string } | { source: 'none' };

/** What to render: one image per strength, all from the same seed (strength 0 is the base model). */
export interface SampleRequest {
  prompt: string;
  /** The unconditional prompt of classifier-free guidance (used when guidance is not 1). */
  negativePrompt: string;
  /** The starting noise (and Euler ancestral's per-step noise): the same seed gives the same images. */
  seed: number;
  steps: number;
  /** Classifier-free guidance scale; 1 runs the prompt alone. */
  guidance: number;
  width: number;
  height: number;
  sampler: SamplerKind;
  lora: SampleLora;
  /** LoRA multipliers, 0 to 1.5 each (0: the base model, bit for bit). */
  strengths: number[];
}

/** Where a render is: image `image` (0-based, of `images`, at `strength`), denoising step `step` of `steps` done. */
export interface SampleProgress {
  image: number;
  images: number;
  strength: number;
  step: number;
  steps: number;
}

/** One rendered image and the strength it was rendered at. */
export interface StrengthImage extends RgbaImage {
  strength: number;
}

/** The defaults of the Try-it form. */
export const SAMPLE_DEFAULTS: Omit<SampleRequest, 'lora'> = { prompt: '', negativePrompt: '', seed: 1, steps: 20, guidance: 7.5, width: 512, height: 512, sampler: 'euler_a', strengths: [0, 1] };

/** The most images one request renders. */
export const MAX_STRENGTHS = 16;

const side = (label: string) => num(label, 64, 2048, { int: true, multipleOf: 64 });
const text = (label: string) => z.string({ error: () => `${label} must be text` }).max(4000, `${label} is over 4000 characters`);
const strength = num('Strength', 0, 1.5);
const schema = z.object({
  prompt: text('Prompt'),
  negativePrompt: text('Negative prompt'),
  seed: num('Seed', 0, 2 ** 32 - 1, { int: true }),
  steps: num('Steps', 1, 150, { int: true }),
  guidance: num('Guidance', 0, 30),
  width: side('Width'),
  height: side('Height'),
  sampler: oneOf('Sampler', SAMPLERS),
  strengths: z.array(strength, { error: () => 'Strengths must be a list of numbers' }).min(1, 'Give at least one strength').max(MAX_STRENGTHS, `At most ${MAX_STRENGTHS} strengths per render`),
});

/** A request that did not validate: each field's message. */
export class SampleRequestError extends Error {
  constructor(readonly errors: Record<string, string>) {
    super(Object.entries(errors).map(([k, m]) => `${k}: ${m}`).join('; '));
    this.name = 'SampleRequestError';
  }
}

/** Per-field errors of a request (the LoRA source is the host's to check); empty when it is valid. */
export function sampleRequestErrors(raw: unknown): Record<string, string> {
  const r = schema.safeParse(raw);
  const errors: Record<string, string> = {};
  if (!r.success) for (const issue of r.error.issues) errors[issue.path.map(String).slice(0, 1).join('.') || 'request'] ??= issue.message;
  return errors;
}

/** The request's render settings, validated (throws SampleRequestError naming each bad field). */
export function checkSampleRequest<T extends Omit<SampleRequest, 'lora'>>(raw: T): T {
  const errors = sampleRequestErrors(raw);
  if (Object.keys(errors).length) throw new SampleRequestError(errors);
  return raw;
}

