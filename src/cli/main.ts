// `lorasmith train` and `lorasmith inspect`: the trainer and file inspection from the command line, on Dawn.
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { encode as encodePng } from 'fast-png';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { nodeGpu } from '../engine/node.js';
import { fileSource } from '../model/node-source.js';
import { folderRepo } from '../model/node-repo.js';
import { loadDiffusers, loadSingleFile, type Pipeline } from '../model/pipeline.js';
import { detectCheckpoint } from '../model/detect.js';
import { inferSingleFileConfigs } from '../model/infer-config.js';
import { clip, openSafetensors, preview } from '../model/safetensors.js';
import { TINY_DEMO_SIZE } from '../model/tiny.js';
import { ClipTokenizer } from '../model/tokenizer.js';
import type { TrainConfig } from '../training/config.js';
import { checkSettings, SettingsError, TrainingSession, type SessionEvents } from '../training/session.js';
import type { RunControl } from '../training/loop.js';
import { readImages } from './read-images.js';
import { readStateDir, stateDirFor, writeStateDir } from './run-state-dir.js';
import { CAPTION_USAGE, captionCommand } from './caption.js';
import type { Backend } from '../engine/backend.js';
import { sample, SAMPLE_USAGE } from './sample.js';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);

const USAGE = `usage:
  lorasmith train --model <tiny|folder|file.safetensors> --images <dir> --out <file.safetensors> [--steps N | --epochs N] [--batch N] [--accum N]
                  [--lr X] [--te-lr X] [--dim N] [--alpha X] [--conv-dim N [--conv-alpha X]] [--resolution N] [--trigger WORD] [--seed N] [--no-te] [--config preset.json]
                  [--optimizer adamw|lion|sgd|prodigy] [--network-type lora|loha|lokr|dora] [--save-every N] [--save-state] [--resume earlier.safetensors | --resume-state DIR] [--samples DIR [--sample-every N] [--sample-steps N] [--sample-prompt TEXT]]
                  [--validation-split X | --validate-training] [--validate-every N]
      --epochs sets the run length in epochs (images x repeats per epoch) instead of --steps; --conv-dim trains LoCon
      (conv alpha defaults to the conv dim); --network-type loha|lokr|dora trains that LyCORIS type (network dropout 0);
      --resume continues with the file's own rank and alpha (the optimizer starts fresh).
      --save-state keeps the run state (optimizer, step, random streams) in <out>-state/ at every save; --resume-state DIR
      continues that run exactly, with its settings (options given must match them) and the same images.
      --validation-split X holds out that fraction of the images (at least one) and reports their loss with fixed noise and
      timesteps every --validate-every steps (default a tenth of the run) and at the end; --validate-training validates on
      up to 16 training images instead. The best step's LoRA is also written as <out>-best.safetensors.
      Ctrl-C stops after the current step and saves; a crash keeps the last periodic save.
  lorasmith inspect <file.safetensors>
${SAMPLE_USAGE}
${CAPTION_USAGE}`;

async function loadModel(backend: Backend, model: string): Promise<Pipeline> {
  if (model === 'tiny') return loadDiffusers(backend, folderRepo(join(ROOT, 'public/tiny')));
  const st = statSync(model, { throwIfNoEntry: false });
  if (!st) throw new Error(`${model}: no such file or folder (--model takes tiny, a diffusers folder or a .safetensors file)`);
  if (st.isDirectory()) return loadDiffusers(backend, folderRepo(model));
  const tokDir = join(ROOT, 'public/clip-tokenizer');
  const tok = ClipTokenizer.fromFiles(readFileSync(join(tokDir, 'vocab.json'), 'utf8'), readFileSync(join(tokDir, 'merges.txt'), 'utf8'));
  return loadSingleFile(backend, await fileSource(model), tok);
}

function bar(done: number, total: number, width = 30): string {
  const n = Math.round((done / total) * width);
  return '[' + '#'.repeat(n) + '.'.repeat(width - n) + ']';
}

function fmtTime(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** The `train` options as parseArgs reads them. */
type TrainArgs = Partial<Record<string, string | boolean>>;

/** --validation-split X (holdout), --validate-training, --validate-every N as settings; refused together or without a validation set. */
function validationOverrides(v: TrainArgs, n: (k: string) => number | undefined): Partial<Record<string, unknown>> {
  const split = n('validation-split');
  if (split !== undefined && v['validate-training']) throw new Error('--validation-split and --validate-training choose two validation sets: give one of them');
  const mode = split !== undefined ? 'holdout' : v['validate-training'] ? 'training' : undefined;
  return { validation: mode, validationSplit: split, validateEvery: n('validate-every') };
}

/** The settings from a preset file and the options, validated (the tiny model defaults to its 64-pixel size). */
function trainSettings(v: TrainArgs, out: string, saved?: TrainConfig): TrainConfig {
  const str = (k: string) => {
    const x = v[k];
    return typeof x === 'string' ? x : undefined;
  };
  const preset = str('config') ? JSON.parse(readFileSync(str('config')!, 'utf8')) : {};
  const n = (k: string) => (str(k) === undefined ? undefined : Number(str(k)));
  const overrides = Object.fromEntries(
    Object.entries({ baseSteps: n('steps'), maxEpochs: n('epochs'), convDim: n('conv-dim'), convAlpha: n('conv-alpha') ?? n('conv-dim'), batchSize: n('batch'), gradAccumulation: n('accum'), unetLr: n('lr'), textEncoderLr: n('te-lr'), networkDim: n('dim'), networkAlpha: n('alpha'), resolution: n('resolution'), triggerWord: str('trigger'), seed: n('seed'), trainTextEncoder: v['no-te'] ? false : undefined, optimizer: str('optimizer'), networkType: str('network-type'), networkDropout: str('network-type') && str('network-type') !== 'lora' ? 0 : undefined, saveEvery: n('save-every'), sampleEvery: n('sample-every'), sampleSteps: n('sample-steps'), samplePrompt: str('sample-prompt'), ...validationOverrides(v, n), runName: basename(out, '.safetensors').replace(/[^\w. -]/g, '_') }).filter(([, x]) => x !== undefined),
  );
  try {
    const config = checkSettings({ ...(v.model === 'tiny' ? TINY_DEMO_SIZE : {}), ...saved, ...preset, ...overrides });
    if (v['validate-every'] !== undefined && config.validation === 'off') throw new Error('--validate-every needs a validation set: add --validation-split X (e.g. 0.1) or --validate-training');
    return config;
  } catch (e) {
    if (e instanceof SettingsError) throw new Error('invalid settings:\n' + Object.entries(e.errors).map(([k, m]) => `  ${k}: ${m}`).join('\n'));
    throw e;
  }
}

/** Where the run's events go on a terminal: a progress line, the LoRA file, preview PNGs; `speed` tells the per-step time after the first. */
function terminalEvents(out: string, samples: string | undefined, stateDir: string | undefined): { events: SessionEvents; speed: () => string } {
  let first: { step: number; at: number } | undefined;
  // The best validation step's save is kept beside the last one.
  let bestStep = 0;
  const bestOut = out.replace(/(\.safetensors)?$/, '-best.safetensors');
  let last: { step: number; at: number } | undefined;
  const events: SessionEvents = {
    onProgress: (stage, c) => {
      if (stage === 'caching' && c && c.done > 0) process.stdout.write(`\rencoding latents ${c.done}/${c.total}`);
      else if (stage === 'compiling' && !c) process.stdout.write('\n');
      else if (stage === 'compiling' && c && c.total > 0) process.stdout.write(`\rcompiling GPU kernels ${c.done}/${c.total}${c.done === c.total ? '\n' : ''}`);
    },
    onMetrics: (m) => {
      // The first step carries most of the pipeline compilation; later ones show the running speed.
      const now = performance.now();
      if (!first) first = { step: m.step, at: now };
      last = { step: m.step, at: now };
      process.stdout.write(`\r${bar(m.step, m.totalSteps)} step ${m.step}/${m.totalSteps} loss ${m.loss.toFixed(4)} (avg ${m.smoothLoss.toFixed(4)}) ${m.stepsPerSec.toFixed(2)} it/s ETA ${fmtTime(m.etaMs)}   `);
    },
    onCheckpoint: (f, step, state) => {
      writeFileSync(out, f);
      const kept = stateDir && state ? ` and the run state ${writeStateDir(stateDir, state)}` : '';
      process.stdout.write(`\nsaved ${out}${kept} at step ${step}\n`);
      if (step !== bestStep) return;
      writeFileSync(bestOut, f);
      process.stdout.write(`saved ${bestOut} (the best validation loss so far, step ${step})\n`);
    },
    onValidation: (p) => {
      if (p.best) bestStep = p.step;
      process.stdout.write(`\nvalidation loss ${p.loss.toFixed(5)} at step ${p.step} on ${p.images.length} ${p.images.length === 1 ? 'image' : 'images'}${p.best ? ' (best so far)' : ` (best ${bestStep})`}\n`);
    },
    onPreview: samples
      ? (img, step, prompt) => {
          const file = join(samples, `${basename(out, '.safetensors')}-${String(step).padStart(6, '0')}.png`);
          writeFileSync(file, encodePng({ width: img.width, height: img.height, data: new Uint8Array(img.data.buffer, img.data.byteOffset, img.data.length), channels: 4 }));
          process.stdout.write(`\nsample ${file} ("${prompt}")\n`);
        }
      : undefined,
  };
  const speed = () => (first && last && last.step > first.step ? `, ${((last.at - first.at) / (last.step - first.step)).toFixed(0)} ms per step after the first` : '');
  return { events, speed };
}

/** Ctrl-C stops after the current image or step (the trainer saves at the end); a second one quits at once. */
function stopOnCtrlC(control: RunControl): void {
  process.once('SIGINT', () => {
    process.stdout.write('\nstopping after this step and saving (Ctrl-C again to quit now)\n');
    control.stop();
    process.once('SIGINT', () => process.exit(130));
  });
}

async function train(argv: string[]): Promise<void> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' }, images: { type: 'string' }, out: { type: 'string' }, steps: { type: 'string' }, batch: { type: 'string' }, accum: { type: 'string' },
      epochs: { type: 'string' }, 'conv-dim': { type: 'string' }, 'conv-alpha': { type: 'string' }, 'network-type': { type: 'string' },
      lr: { type: 'string' }, 'te-lr': { type: 'string' }, dim: { type: 'string' }, alpha: { type: 'string' }, resolution: { type: 'string' }, trigger: { type: 'string' },
      seed: { type: 'string' }, 'no-te': { type: 'boolean' }, config: { type: 'string' }, optimizer: { type: 'string' }, 'save-every': { type: 'string' }, resume: { type: 'string' },
      'save-state': { type: 'boolean' }, 'resume-state': { type: 'string' },
      samples: { type: 'string' }, 'sample-every': { type: 'string' }, 'sample-steps': { type: 'string' }, 'sample-prompt': { type: 'string' },
      'validation-split': { type: 'string' }, 'validate-every': { type: 'string' }, 'validate-training': { type: 'boolean' },
    },
  });
  if (!v.model || !v.images || !v.out) throw new Error(`train needs --model, --images and --out\n${USAGE}`);
  if (v.resume && v['resume-state']) throw new Error('--resume and --resume-state: give one (--resume-state continues a run exactly, --resume only its LoRA weights)');
  const resumed = v['resume-state'] ? await readStateDir(v['resume-state']) : undefined;
  const config = trainSettings(v, v.out, resumed?.summary.config);
  const { backend, adapter } = await nodeGpu();
  console.log(`GPU: ${adapter.description || adapter.vendor}${adapter.isFallback ? ' (software)' : ''}`);
  const { items, messages } = readImages(v.images, config.repeats);
  for (const m of messages) console.warn(m);
  if (!items.length) throw new Error(`no usable images in ${v.images} (PNG, JPEG or WebP, captions in .txt beside them)`);
  const pipeline = await loadModel(backend, v.model);
  if (v.samples) mkdirSync(v.samples, { recursive: true });
  const { events, speed } = terminalEvents(v.out, v.samples, v['save-state'] ? stateDirFor(v.out) : undefined);
  // --resume continues an earlier run's LoRA (same targets, the file's ranks and weights); --resume-state the run itself.
  const continueFrom = resumed ? { file: resumed.file, name: resumed.name } : v.resume ? { file: readFileSync(v.resume), name: v.resume } : undefined;
  const session = await TrainingSession.open({ pipeline, config, items, ...(continueFrom ? { continueFrom } : {}), events });
  if (session.continued) console.log(`resuming from ${continueFrom!.name} (${session.continued.modules} modules)`);
  for (const note of session.continued?.notes ?? []) console.log(note);
  const p = session.plan;
  console.log(`${items.length} ${items.length === 1 ? 'image' : 'images'}, ${p.steps} ${p.steps === 1 ? 'step' : 'steps'}, ${p.epochs} ${p.epochs === 1 ? 'epoch' : 'epochs'} (effective batch ${p.effectiveBatch}), U-Net LR ${p.unetLr.toExponential(2)}, warmup ${p.warmupSteps}`);
  const t0 = performance.now();
  stopOnCtrlC(session.control);
  const end = await session.run();
  if (!end.trained) return void console.log('\nstopped while encoding the latents: nothing trained, nothing saved');
  const ms = performance.now() - t0;
  console.log(`done in ${fmtTime(ms)} (${(ms / p.steps).toFixed(0)} ms per step including latents and compilation${speed()})`);
}

async function inspect(file: string): Promise<void> {
  const src = await fileSource(file);
  const f = await openSafetensors(src).finally(() => src.close?.());
  // Names, shapes and values as the file has them, cut where a damaged or odd file makes them absurdly long.
  console.log(`${file}: ${f.tensors.size} tensors`);
  for (const [k, t] of f.tensors) console.log(`  ${clip(k, 200)}  ${t.dtype} ${t.shape.length > 32 ? preview(t.shape, 120) : `[${t.shape.join(', ')}]`}`);
  if (Object.keys(f.metadata).length) {
    console.log('metadata:');
    for (const [k, val] of Object.entries(f.metadata)) console.log(`  ${clip(k, 120)} = ${clip(val, 120)}`);
  }
  // What loading it as an SD 1.x checkpoint would read from its shapes (other files: why not).
  try {
    detectCheckpoint(f.tensors, { file });
    const info = inferSingleFileConfigs(f.tensors, f.metadata, file);
    const u = info.unet;
    console.log(`SD 1.x checkpoint (${info.dtype}), architecture read from the shapes:`);
    console.log(`  U-Net: channels [${u.blockChannels}], ${u.layersPerBlock} ResBlocks per level, attention at [${u.attentionLevels}], ${u.transformerDepth ?? 1} transformer block(s), context ${u.crossAttentionDim}, in/out ${u.inChannels}/${u.outChannels}, ${u.heads} heads, ${u.groups} groups`);
    console.log(`  text encoder: width ${info.clip.width}, ${info.clip.layers} layers, ${info.clip.heads} heads, MLP ${info.clip.mlp}, vocabulary ${info.clip.vocabSize}, ${info.clip.maxPositions} positions`);
    console.log(`  VAE: channels [${info.vae.blockChannels}], ${info.vae.layersPerBlock} ResBlocks per level, ${info.vae.latentChannels} latent channels, ${info.vae.groups} groups, scaling ${info.vae.scalingFactor}`);
    for (const n of info.notes) console.log(`  ${n}`);
  } catch (e) {
    console.log(`not loadable as an SD 1.x checkpoint: ${clip(e instanceof Error ? e.message : String(e), 1000)}`);
  }
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === 'train') await train(rest);
  else if (cmd === 'inspect' && rest[0]) await inspect(rest[0]);
  else if (cmd === 'sample') await sample(rest, loadModel);
  else if (cmd === 'caption') await captionCommand(rest);
  else {
    console.log(USAGE);
    process.exit(cmd ? 1 : 0);
  }
  process.exit(0);
}

/** Every failure ends as `error: <message>` (never a stack trace), cut to a readable length, with exit code 1. */
function die(e: unknown): never {
  console.error(`\nerror: ${clip(e instanceof Error ? e.message : String(e), 4000)}`);
  process.exit(1);
}
process.on('uncaughtException', die);
process.on('unhandledRejection', die);
main().catch(die);
