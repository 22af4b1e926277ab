// `lorasmith caption`: a folder's images tagged by a WD14-style tagger (a local folder or a hub repository), each caption written as the .txt beside its image.
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type * as Ort from 'onnxruntime-web';
import { ortOnDevice, releaseOrt } from '../bench/ort-webgpu.js';
import { nodeGpu } from '../engine/node.js';
import { captionPath } from '../training/caption-export.js';
import { chooseTags, DEFAULT_CHARACTER_THRESHOLD, DEFAULT_TAG_THRESHOLD, DEFAULT_TAGGER_REPO, TAGGER_FILES, taggedCaption, thresholdProblem } from '../training/tagger.js';
import { taggerFromHub } from '../training/tagger-hub.js';
import { openTagger, type TaggerFiles, type TaggerProvider } from '../training/tagger-session.js';
import { readImages } from './read-images.js';

export const CAPTION_USAGE = `  lorasmith caption --images <dir> [--tagger <folder|owner/name>] [--threshold X (0.35)] [--character-threshold X (0.85)] [--trigger WORD] [--overwrite]
                    [--provider webgpu|wasm] [--endpoint URL]
      tags every image with a WD14 tagger (default ${DEFAULT_TAGGER_REPO}; a folder holding ${TAGGER_FILES.model} and ${TAGGER_FILES.tags}
      is read as it is, a hub repository is downloaded on each run) and writes <image>.txt beside it; images that already have
      a caption file keep it unless --overwrite. Rating tags are left out; the trigger word comes first.`;

/** The tagger's files from a folder, or from the hub when `tagger` is not a folder. */
async function taggerFiles(tagger: string, endpoint: string | undefined): Promise<TaggerFiles> {
  if (statSync(tagger, { throwIfNoEntry: false })?.isDirectory()) {
    const read = (f: string) => {
      const p = join(tagger, f);
      if (!existsSync(p)) throw new Error(`${tagger} has no ${f}: a tagger folder holds ${TAGGER_FILES.model} and ${TAGGER_FILES.tags} (download both from the tagger's Hugging Face repository)`);
      return readFileSync(p);
    };
    return { model: new Uint8Array(read(TAGGER_FILES.model)), tags: read(TAGGER_FILES.tags).toString('utf8'), from: tagger };
  }
  console.log(`downloading ${tagger} from ${endpoint ?? 'the Hugging Face hub'} (not kept: download model.onnx and selected_tags.csv into a folder and pass that to skip this)`);
  let shown = 0;
  return taggerFromHub({ repo: tagger, ...(endpoint ? { endpoint } : {}) }, {
    cache: null,
    onProgress: (p) => {
      if (Date.now() - shown < 500) return;
      shown = Date.now();
      process.stdout.write(`\r${p.stage}   `);
    },
  });
}

/** ORT and the providers to try: WebGPU on Dawn (then wasm), or wasm only. */
async function runtime(provider: string): Promise<{ ort: typeof Ort; providers: TaggerProvider[] }> {
  if (provider === 'wasm') {
    const specifier = 'onnxruntime-web';
    const ort = (await import(/* @vite-ignore */ specifier)) as typeof Ort;
    ort.env.wasm.numThreads = 1;
    ort.env.logLevel = 'error';
    return { ort, providers: [{ name: 'wasm' }] };
  }
  if (provider !== 'webgpu') throw new Error(`--provider takes webgpu or wasm, not "${provider}"`);
  const { device, gpuAdapter } = await nodeGpu();
  const { ort } = await ortOnDevice(device, gpuAdapter);
  return { ort, providers: [{ name: 'webgpu', device }, { name: 'wasm' }] };
}

function captionArgs(argv: string[]) {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      images: { type: 'string' }, tagger: { type: 'string' }, threshold: { type: 'string' }, 'character-threshold': { type: 'string' },
      trigger: { type: 'string' }, overwrite: { type: 'boolean' }, provider: { type: 'string' }, endpoint: { type: 'string' },
    },
  });
  if (!v.images) throw new Error(`caption needs --images\n${CAPTION_USAGE}`);
  const threshold = v.threshold === undefined ? DEFAULT_TAG_THRESHOLD : Number(v.threshold);
  const characterThreshold = v['character-threshold'] === undefined ? DEFAULT_CHARACTER_THRESHOLD : Number(v['character-threshold']);
  const bad = thresholdProblem(threshold, '--threshold') ?? thresholdProblem(characterThreshold, '--character-threshold');
  if (bad) throw new Error(bad);
  return { images: v.images, tagger: v.tagger ?? DEFAULT_TAGGER_REPO, threshold, characterThreshold, trigger: v.trigger ?? '', overwrite: !!v.overwrite, provider: v.provider ?? 'webgpu', endpoint: v.endpoint };
}

/** Tag the folder's images and write their captions; prints one line per image. */
export async function captionCommand(argv: string[]): Promise<void> {
  const a = captionArgs(argv);
  const { items, messages } = readImages(a.images, 1);
  for (const m of messages.filter((m) => m.startsWith('skipped'))) console.warn(m);
  const todo = items.filter((it) => a.overwrite || !existsSync(join(a.images, captionPath(it.name))));
  if (todo.length < items.length) console.log(`${items.length - todo.length} of ${items.length} images already have a caption file and keep it (--overwrite to replace)`);
  if (!todo.length) return void console.log(items.length ? 'nothing to caption' : `no usable images in ${a.images}`);
  const files = await taggerFiles(a.tagger, a.endpoint);
  const { ort, providers } = await runtime(a.provider);
  const tagger = await openTagger(ort, files, providers);
  if (tagger.fallbackNote) console.warn(`WebGPU was not used (${tagger.fallbackNote}); tagging on the CPU (wasm)`);
  console.log(`tagger ${files.from}: ${tagger.tags.length} tags, ${tagger.size}x${tagger.size} input, on ${tagger.provider}`);
  try {
    for (const it of todo) {
      const found = chooseTags(await tagger.score(it.image), tagger.tags, a);
      const caption = taggedCaption(found, a.trigger);
      writeFileSync(join(a.images, captionPath(it.name)), `${caption}\n`);
      console.log(`${captionPath(it.name)}: ${caption}`);
    }
  } finally {
    await tagger.release();
    releaseOrt();
  }
}
