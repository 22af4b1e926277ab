// `lorasmith sample`: render a prompt with the base model and a LoRA file at several strengths from one seed, as PNGs with their settings.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Pipeline } from '../model/pipeline.js';
import type { Backend } from '../engine/backend.js';
import { nodeGpu } from '../engine/node.js';
import { settingsPng } from '../training/png-settings.js';
import { openSampleLora, renderStrengths } from '../training/sample-render.js';
import { SAMPLE_DEFAULTS, SAMPLERS, SampleRequestError, checkSampleRequest, type SampleRequest } from '../training/sample-settings.js';

export const SAMPLE_USAGE = `  lorasmith sample --model <tiny|folder|file.safetensors> --prompt TEXT --out <dir> [--lora file.safetensors] [--strengths 0,0.5,1]
                   [--negative TEXT] [--seed N] [--steps N] [--guidance X] [--width N] [--height N] [--sampler ${SAMPLERS.join('|')}]
      one PNG per strength from the same seed (strength 0: the base model), named <lora or base>-<strength>.png;
      sizes default to 64 for the tiny model and 512 otherwise; --strengths defaults to 0,1 with --lora and 0 without.`;

const OPTIONS = {
  model: { type: 'string' }, prompt: { type: 'string' }, out: { type: 'string' }, lora: { type: 'string' }, strengths: { type: 'string' }, negative: { type: 'string' },
  seed: { type: 'string' }, steps: { type: 'string' }, guidance: { type: 'string' }, width: { type: 'string' }, height: { type: 'string' }, sampler: { type: 'string' },
} as const;

/** The request from the options (numbers as given, so the checks name what was wrong); throws with every bad field. */
function requestOf(v: Partial<Record<keyof typeof OPTIONS, string>>): Omit<SampleRequest, 'lora'> {
  const n = (k: keyof typeof OPTIONS, d: number) => (v[k] === undefined ? d : Number(v[k]));
  const size = v.model === 'tiny' ? 64 : SAMPLE_DEFAULTS.width;
  const strengths = (v.strengths ?? (v.lora ? '0,1' : '0')).split(',').map((s) => Number(s.trim()));
  const req = {
    prompt: v.prompt ?? '', negativePrompt: v.negative ?? '', seed: n('seed', SAMPLE_DEFAULTS.seed), steps: n('steps', SAMPLE_DEFAULTS.steps), guidance: n('guidance', SAMPLE_DEFAULTS.guidance),
    width: n('width', size), height: n('height', size), sampler: (v.sampler ?? SAMPLE_DEFAULTS.sampler) as SampleRequest['sampler'], strengths,
  };
  try {
    return checkSampleRequest(req);
  } catch (e) {
    if (e instanceof SampleRequestError) throw new Error('invalid sample settings:\n' + Object.entries(e.errors).map(([k, m]) => `  ${k}: ${m}`).join('\n'));
    throw e;
  }
}

/** Run `lorasmith sample` with the CLI's model loader; prints per-step progress and the files written. */
export async function sample(argv: string[], loadModel: (backend: Backend, model: string) => Promise<Pipeline>): Promise<void> {
  const { values: v } = parseArgs({ args: argv, options: OPTIONS });
  if (!v.model || v.prompt === undefined || !v.out) throw new Error(`sample needs --model, --prompt and --out\nusage:\n${SAMPLE_USAGE}`);
  const req = requestOf(v);
  const bytes = v.lora ? readFileSync(v.lora) : undefined;
  const { backend } = await nodeGpu();
  const pipeline = await loadModel(backend, v.model);
  const lora = await openSampleLora(pipeline, bytes ? { source: 'file', bytes, name: v.lora } : { source: 'none' }, null);
  for (const note of lora.notes) console.log(note);
  try {
    const images = await renderStrengths(pipeline, req, lora.adapters, lora.settings, (p) =>
      process.stdout.write(`\rimage ${p.image + 1}/${p.images} (strength ${p.strength}) step ${p.step}/${p.steps}${p.step === p.steps ? ', decoding' : ''}   `),
    );
    process.stdout.write('\n');
    mkdirSync(v.out, { recursive: true });
    const stem = v.lora ? basename(v.lora, '.safetensors') : 'base';
    for (const img of images) {
      const file = join(v.out, `${img.strength === 0 ? 'base' : stem}-${img.strength}.png`);
      const { strengths: _, ...settings } = req;
      writeFileSync(file, settingsPng(img, { ...settings, strength: img.strength, model: pipeline.name, ...(v.lora && img.strength !== 0 ? { lora: basename(v.lora) } : {}) }));
      console.log(`wrote ${file}`);
    }
  } finally {
    lora.dispose();
  }
}
