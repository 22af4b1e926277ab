// WD14-style image tagging (SmilingWolf's wd taggers): the tag list read, an image prepared the way the tagger was trained, scores turned into a caption.
import { withTrigger } from './captions.js';
import type { RgbaImage } from './images.js';

/** The tagger a caption request uses unless told otherwise (ViT v3: 448², NHWC BGR input, 10,861 tags). */
export const DEFAULT_TAGGER_REPO = 'SmilingWolf/wd-vit-tagger-v3';
/** The two files of a wd tagger repository, as SmilingWolf publishes them. */
export const TAGGER_FILES = { model: 'model.onnx', tags: 'selected_tags.csv' } as const;
/** selected_tags.csv categories (Danbooru's): 0 general, 4 character, 9 rating (general/sensitive/questionable/explicit). */
export const TAG_CATEGORY = { general: 0, character: 4, rating: 9 } as const;
/** The general-tag threshold SmilingWolf's own demo and kohya's tagger script default to. */
export const DEFAULT_TAG_THRESHOLD = 0.35;
/** Character tags need more certainty (the same demo's default). */
export const DEFAULT_CHARACTER_THRESHOLD = 0.85;

/** One line of selected_tags.csv: the tag as Danbooru spells it (underscores) and its category. */
export interface TaggerTag {
  name: string;
  category: number;
}

/** A tagger file that cannot be used: the message names the file, what is wrong and what to do. */
export class TaggerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TaggerError';
  }
}

/** Split one CSV line, honouring double quotes ("a,b" and "" inside quotes). */
function csvFields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted && ch === '"' && line[i + 1] === '"') {
      cur += '"';
      i++;
    } else if (ch === '"') quoted = !quoted;
    else if (ch === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/** The tags of a selected_tags.csv (header `tag_id,name,category,count`), in the order of the model's scores. */
export function parseSelectedTags(text: string, file: string = TAGGER_FILES.tags): TaggerTag[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/).filter((l) => l.trim() !== '');
  const head = csvFields(lines[0] ?? '').map((h) => h.trim().toLowerCase());
  const nameAt = head.indexOf('name');
  const catAt = head.indexOf('category');
  if (nameAt < 0 || catAt < 0)
    throw new TaggerError(`${file}: the first line should name the columns tag_id,name,category,count, but it is "${(lines[0] ?? '').slice(0, 80)}". This is not a wd tagger's tag list; use the selected_tags.csv from the same repository as the model.`);
  const tags = lines.slice(1).map((l, i) => {
    const f = csvFields(l);
    const category = Number(f[catAt]);
    const name = f[nameAt]?.trim() ?? '';
    if (!name || !Number.isInteger(category)) throw new TaggerError(`${file}: line ${i + 2} ("${l.slice(0, 80)}") has no tag name or a category that is not a whole number.`);
    return { name, category };
  });
  if (!tags.length) throw new TaggerError(`${file} lists no tags: download it again from the tagger's repository.`);
  return tags;
}

/** PIL's bicubic kernel (a = -0.5), the filter SmilingWolf's preprocessing resizes with. */
function bicubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

/** Resampling weights from `inSize` to `outSize` samples, PIL's way: the kernel widened by the scale when shrinking (antialiased), each row normalised. */
function weights(inSize: number, outSize: number): { start: number; k: Float64Array }[] {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  return Array.from({ length: outSize }, (_, o) => {
    const center = (o + 0.5) * scale;
    const start = Math.max(Math.trunc(center - support + 0.5), 0);
    const end = Math.min(Math.trunc(center + support + 0.5), inSize);
    const k = Float64Array.from({ length: end - start }, (_, j) => bicubic((j + start - center + 0.5) / filterScale));
    const sum = k.reduce((s, v) => s + v, 0);
    return { start, k: k.map((v) => (sum ? v / sum : 0)) };
  });
}

/** One separable pass over 3-channel bytes (`along` x or y), rounded and clamped to bytes as PIL keeps its images. */
function pass(src: Uint8Array, w: number, h: number, outW: number, outH: number, along: 'x' | 'y'): Uint8Array {
  const out = new Uint8Array(outW * outH * 3);
  const ws = weights(along === 'x' ? w : h, along === 'x' ? outW : outH);
  for (let y = 0; y < outH; y++)
    for (let x = 0; x < outW; x++) {
      const { start, k } = ws[along === 'x' ? x : y]!;
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let j = 0; j < k.length; j++) s += k[j]! * src[((along === 'x' ? y * w + start + j : (start + j) * w + x) * 3) + c]!;
        out[(y * outW + x) * 3 + c] = Math.min(255, Math.max(0, Math.round(s)));
      }
    }
  return out;
}

/**
 * The tagger's input for one image: alpha flattened onto white, padded to a centred square with
 * white, resized to `size`² with PIL's bicubic filter (width first, then height, as PIL does), and
 * laid out as the wd taggers take it: [size, size, 3] float32, channels in BGR order, values 0-255.
 */
export function prepareTaggerInput(img: RgbaImage, size: number): Float32Array {
  const side = Math.max(img.width, img.height);
  const ox = Math.floor((side - img.width) / 2);
  const oy = Math.floor((side - img.height) / 2);
  const square = new Uint8Array(side * side * 3).fill(255);
  for (let y = 0; y < img.height; y++)
    for (let x = 0; x < img.width; x++) {
      const i = (y * img.width + x) * 4;
      const a = img.data[i + 3]! / 255;
      const o = ((y + oy) * side + x + ox) * 3;
      for (let c = 0; c < 3; c++) square[o + c] = Math.round(img.data[i + c]! * a + 255 * (1 - a));
    }
  const wide = side === size ? square : pass(square, side, side, size, side, 'x');
  const done = side === size ? wide : pass(wide, size, side, size, size, 'y');
  const out = new Float32Array(size * size * 3);
  for (let p = 0; p < size * size; p++) for (let c = 0; c < 3; c++) out[p * 3 + c] = done[p * 3 + 2 - c]!;
  return out;
}

/** Danbooru's underscore faces, kept as they are when underscores become spaces. */
const KAOMOJI = new Set(['0_0', '(o)_(o)', '+_+', '+_-', '._.', '<o>_<o>', '<|>_<|>', '=_=', '>_<', '3_3', '6_9', '>_o', '@_@', '^_^', 'o_o', 'u_u', 'x_x', '|_|', '||_||']);

/** A tag as a caption writes it: `long_hair` → `long hair` (faces such as `^_^` unchanged); commas, which split captions, become spaces. */
export function captionTag(name: string): string {
  return (KAOMOJI.has(name) ? name : name.replace(/_/g, ' ')).replace(/,/g, ' ').trim();
}

export interface TagChoice {
  /** General tags scoring at least this are kept (0-1). */
  threshold: number;
  /** Character tags need this score; the general threshold when absent. */
  characterThreshold?: number;
}

/** A tag the tagger found, with its score. */
export interface FoundTag {
  tag: string;
  score: number;
}

/** Tags at or above their threshold, highest score first, rating tags (general, sensitive, …) dropped. */
export function chooseTags(scores: ArrayLike<number>, tags: readonly TaggerTag[], o: TagChoice): FoundTag[] {
  const found: FoundTag[] = [];
  for (let i = 0; i < tags.length; i++) {
    const t = tags[i]!;
    if (t.category === TAG_CATEGORY.rating) continue;
    const min = t.category === TAG_CATEGORY.character ? (o.characterThreshold ?? o.threshold) : o.threshold;
    if (scores[i]! >= min) found.push({ tag: captionTag(t.name), score: scores[i]! });
  }
  return found.sort((a, b) => b.score - a.score);
}

/** The caption the tags make: the trigger word first (once), then the tags in score order. */
export function taggedCaption(found: readonly FoundTag[], triggerWord: string): string {
  return withTrigger(found.map((f) => f.tag).join(', '), triggerWord);
}

/** Why a threshold is not usable, or null. An emptied field (NaN from the input, null once kept as JSON) is called empty, not "NaN". */
export function thresholdProblem(v: number, what = 'The tag threshold'): string | null {
  const rule = 'a number above 0 and at most 1 (0.35 is usual)';
  if (typeof v !== 'number' || Number.isNaN(v)) return `${what} is empty: enter ${rule}`;
  return Number.isFinite(v) && v > 0 && v <= 1 ? null : `${what} must be ${rule}, not ${v}`;
}
