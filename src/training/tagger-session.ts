// A wd tagger running in ONNX Runtime Web: the model checked against the wd layout, the execution providers tried in order, one image scored at a time.
import type * as Ort from 'onnxruntime-web';
import type { RgbaImage } from './images.js';
import { parseSelectedTags, prepareTaggerInput, TAGGER_FILES, TaggerError, type TaggerTag } from './tagger.js';

/** An execution provider to try: 'webgpu' (on a given device, or one ORT opens) or 'wasm'. */
export type TaggerProvider = { name: 'webgpu'; device?: GPUDevice } | { name: 'wasm' };

/** A tagger ready to score images. */
export interface Tagger {
  /** The side of the square images it takes (448 for the wd taggers). */
  size: number;
  tags: TaggerTag[];
  /** The execution provider the session runs on. */
  provider: TaggerProvider['name'];
  /** Why an earlier provider in the list was passed over, when one was. */
  fallbackNote?: string;
  /** One score (0-1) per tag, in the order of `tags`. */
  score(img: RgbaImage): Promise<Float32Array>;
  release(): Promise<void>;
}

export interface TaggerFiles {
  /** model.onnx's bytes. */
  model: Uint8Array;
  /** selected_tags.csv's text. */
  tags: string;
  /** Where they came from, for messages (a repository id or a folder). */
  from: string;
}

/** The side the wd taggers take. */
const WD_SIDE = 448;

const shapeWords = (s: readonly (number | string)[]) => `[${s.map((d) => (typeof d === 'number' ? d : `${d || '?'}`)).join(', ')}]`;

/** The square side the model takes, or an error saying how its input differs from a wd tagger's [batch, H, W, 3] float32. */
function inputSide(session: Ort.InferenceSession, from: string): number {
  const m = session.inputMetadata;
  const what = `${from}/${TAGGER_FILES.model}`;
  if (m.length !== 1 || !m[0]!.isTensor) throw new TaggerError(`${what} has ${m.length} inputs; a wd tagger has one image input. Pick a WD14 tagger repository (such as SmilingWolf/wd-vit-tagger-v3).`);
  const { name, type, shape } = m[0]!;
  const [, h, w, c] = shape;
  // A model exported with free height and width takes any square: the wd taggers were trained at 448.
  if (type === 'float32' && shape.length === 4 && c === 3 && typeof h === 'string' && typeof w === 'string') return WD_SIDE;
  if (type !== 'float32' || shape.length !== 4 || c !== 3 || typeof h !== 'number' || h !== w)
    throw new TaggerError(`${what}: its input ${name} is ${type} ${shapeWords(shape)}, but a wd tagger takes float32 [batch, H, W, 3] with H = W (BGR images, channels last). This model is not a WD14-style tagger.`);
  return h;
}

/** The output's score count must be the tag list's length (when the model states it). */
function checkOutput(session: Ort.InferenceSession, tags: number, from: string): void {
  const m = session.outputMetadata[0];
  const n = m?.isTensor ? m.shape[m.shape.length - 1] : undefined;
  if (typeof n === 'number' && n !== tags)
    throw new TaggerError(`${from}: ${TAGGER_FILES.model} gives ${n} scores per image but ${TAGGER_FILES.tags} lists ${tags} tags: the two files come from different taggers. Download both from the same repository.`);
}

async function createSession(ort: typeof Ort, files: TaggerFiles, providers: readonly TaggerProvider[]): Promise<{ session: Ort.InferenceSession; provider: TaggerProvider['name']; note?: string }> {
  if (!files.model.byteLength) throw new TaggerError(`${files.from}/${TAGGER_FILES.model} is empty (0 bytes): download it again.`);
  const passed: string[] = [];
  for (const p of providers) {
    const ep = (p.name === 'webgpu' && p.device ? { name: 'webgpu', device: p.device } : p.name) as Ort.InferenceSession.ExecutionProviderConfig;
    try {
      // ORT copies the bytes into its own heap; the caller may drop them once the session exists.
      const session = await ort.InferenceSession.create(files.model, { executionProviders: [ep], graphOptimizationLevel: 'all' });
      return { session, provider: p.name, ...(passed.length ? { note: passed.join('; ') } : {}) };
    } catch (e) {
      passed.push(`${p.name}: ${(e instanceof Error ? e.message : String(e)).slice(0, 300)}`);
    }
  }
  throw new TaggerError(`${files.from}/${TAGGER_FILES.model} could not be opened by ONNX Runtime (${passed.join('; ')}). The file is damaged or not an ONNX model: download it again, or pick a WD14 tagger repository (such as SmilingWolf/wd-vit-tagger-v3).`);
}

/**
 * Open a wd tagger: the tag list is read first (a wrong one fails before the model is parsed), the
 * model on the first provider that takes it, its input and output checked against the wd layout.
 */
export async function openTagger(ort: typeof Ort, files: TaggerFiles, providers: readonly TaggerProvider[]): Promise<Tagger> {
  const tags = parseSelectedTags(files.tags, `${files.from}/${TAGGER_FILES.tags}`);
  const { session, provider, note } = await createSession(ort, files, providers);
  try {
    const size = inputSide(session, files.from);
    checkOutput(session, tags.length, files.from);
    const input = session.inputNames[0]!;
    const output = session.outputNames[0]!;
    return {
      size, tags, provider, ...(note ? { fallbackNote: note } : {}),
      async score(img) {
        const x = new ort.Tensor('float32', prepareTaggerInput(img, size), [1, size, size, 3]);
        const out = await session.run({ [input]: x });
        const y = out[output]!;
        x.dispose();
        const scores = (await y.getData(true)) as Float32Array;
        if (scores.length !== tags.length)
          throw new TaggerError(`${files.from}: ${TAGGER_FILES.model} gave ${scores.length} scores for an image but ${TAGGER_FILES.tags} lists ${tags.length} tags: the two files come from different taggers.`);
        return scores;
      },
      release: () => session.release(),
    };
  } catch (e) {
    await session.release();
    throw e;
  }
}
