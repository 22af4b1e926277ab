// A small tagger-shaped ONNX model for tests: the wd taggers' input/output names and layout, a few known tags, scores computable by hand.
import { onnxModel, type OnnxGraph } from '../engine/testing/onnx.js';
import type { CacheLike } from '../model/hub-cache.js';
import { TAG_CATEGORY } from './tagger.js';

/**
 * The wd layouts: v3 taggers (wd-vit/swinv2/convnext-tagger-v3) take `input` and give `output`;
 * v2 ones (wd-v1-4-*-tagger-v2, converted from Keras by tf2onnx) take `input_1:0` and give
 * `predictions_sigmoid`. Both: float32 [batch, 448, 448, 3] BGR 0-255 in, [batch, tags] sigmoid scores out.
 */
export const WD_LAYOUTS = { v3: { input: 'input', output: 'output' }, v2: { input: 'input_1:0', output: 'predictions_sigmoid' } } as const;

/**
 * The fixture's tags: each tag's logit is `bias + wB·B + wG·G + wR·R` over the image's mean
 * channel values (0-1). Four ratings first, as in the real lists; a face, a character, colours.
 */
export const FIXTURE_TAGS: readonly { name: string; category: number; bias: number; bgr: [number, number, number] }[] = [
  { name: 'general', category: TAG_CATEGORY.rating, bias: 4, bgr: [0, 0, 0] },
  { name: 'sensitive', category: TAG_CATEGORY.rating, bias: -4, bgr: [0, 0, 0] },
  { name: 'questionable', category: TAG_CATEGORY.rating, bias: -5, bgr: [0, 0, 0] },
  { name: 'explicit', category: TAG_CATEGORY.rating, bias: -6, bgr: [0, 0, 0] },
  { name: 'blue_sky', category: TAG_CATEGORY.general, bias: -1, bgr: [10, -5, -5] },
  { name: 'red_theme', category: TAG_CATEGORY.general, bias: -1, bgr: [-5, -5, 10] },
  { name: 'green_theme', category: TAG_CATEGORY.general, bias: -1, bgr: [-5, 10, -5] },
  { name: '^_^', category: TAG_CATEGORY.general, bias: 1, bgr: [0, 0, 0] },
  { name: 'hatsune_miku', category: TAG_CATEGORY.character, bias: 0.5, bgr: [0, 0, 0] },
  { name: 'long_hair', category: TAG_CATEGORY.general, bias: -0.3, bgr: [0, 0, 0] },
  { name: 'no_humans', category: TAG_CATEGORY.general, bias: -3, bgr: [0, 0, 0] },
];

/** selected_tags.csv for the fixture, as SmilingWolf's files are laid out (tag_id,name,category,count). */
export function fixtureTagsCsv(tags = FIXTURE_TAGS): string {
  return ['tag_id,name,category,count', ...tags.map((t, i) => `${9999990 + i},${t.name},${t.category},${1000 - i}`)].join('\n') + '\n';
}

export interface FixtureOptions {
  layout?: keyof typeof WD_LAYOUTS;
  size?: number;
  /** The batch dimension: symbolic (`'batch'`, as exported with a dynamic batch) or fixed. */
  batch?: number | string;
  /** Scores given per image (default: one per fixture tag); another count makes a model that does not match the tag list. */
  scores?: number;
  /** Leave height and width free (symbolic), as some exports do. */
  freeSide?: boolean;
  /** Put channels first ([batch, 3, H, W]): a model that is not wd-shaped. */
  channelsFirst?: boolean;
}

/** The fixture tagger: mean over H and W, a 3 → tags linear map, sigmoid. */
export function fixtureTaggerModel(o: FixtureOptions = {}): Uint8Array {
  const { input, output } = WD_LAYOUTS[o.layout ?? 'v3'];
  const size: number | string = o.freeSide ? 'side' : (o.size ?? 448);
  const batch = o.batch ?? 'batch';
  const n = o.scores ?? FIXTURE_TAGS.length;
  const tag = (j: number) => FIXTURE_TAGS[j % FIXTURE_TAGS.length]!;
  // W [3, n] acts on 0-255 means: the weights carry the 1/255.
  const w = Array.from({ length: 3 * n }, (_, k) => tag(k % n).bgr[Math.floor(k / n)]! / 255);
  const g: OnnxGraph = {
    name: 'tagger-fixture',
    inputs: [{ name: input, shape: o.channelsFirst ? [batch, 3, size, size] : [batch, size, size, 3] }],
    outputs: [{ name: output, shape: [batch, n] }],
    initializers: [
      { name: 'w', shape: [3, n], data: w },
      { name: 'b', shape: [n], data: Array.from({ length: n }, (_, j) => tag(j).bias) },
    ],
    nodes: [
      { op: 'ReduceMean', inputs: [input], outputs: ['m'], attrs: { axes: { ints: o.channelsFirst ? [2, 3] : [1, 2] }, keepdims: { i: 0 } } },
      { op: 'MatMul', inputs: ['m', 'w'], outputs: ['z'] },
      { op: 'Add', inputs: ['z', 'b'], outputs: ['l'] },
      { op: 'Sigmoid', inputs: ['l'], outputs: [output] },
    ],
  };
  return onnxModel(g);
}

/** The fixture's scores for a prepared input ([size, size, 3] BGR 0-255), in float64: the reference ORT's are checked against. */
export function fixtureScores(input: Float32Array): number[] {
  const mean = [0, 0, 0];
  for (let i = 0; i < input.length; i++) mean[i % 3] = mean[i % 3]! + input[i]!;
  const px = input.length / 3;
  const bgr = mean.map((m) => m / px / 255);
  return FIXTURE_TAGS.map((t) => 1 / (1 + Math.exp(-(t.bias + t.bgr[0] * bgr[0]! + t.bgr[1] * bgr[1]! + t.bgr[2] * bgr[2]!))));
}

/** A hub at http://hub.test answering `/<repo>/resolve/main/<path>` from `files` (404 otherwise), an in-memory Cache Storage, and the URLs asked. */
export function fixtureHub(files: Record<string, Uint8Array | string>) {
  const asked: string[] = [];
  const fetchImpl = (async (input: RequestInfo | URL) => {
    const url = String(input);
    asked.push(url);
    const m = /^http:\/\/hub\.test\/(.+)\/resolve\/main\/(.+)$/.exec(url);
    const body = m ? files[`${m[1]}/${m[2]}`] : undefined;
    if (body === undefined) return new Response('Entry not found', { status: 404 });
    const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
    return new Response(bytes.slice(), { headers: { 'content-length': String(bytes.length) } });
  }) as typeof fetch;
  const stored = new Map<string, { blob: Blob; headers: Headers }>();
  const cache: CacheLike = {
    match: async (r) => {
      const e = stored.get(String(r));
      return e ? new Response(e.blob, { headers: e.headers }) : undefined;
    },
    put: async (r, res) => void stored.set(String(r), { blob: await res.blob(), headers: res.headers }),
    delete: async (r) => stored.delete(String(r)),
  };
  return { endpoint: 'http://hub.test', asked, options: { cache, fetchImpl, freeBytes: async () => null } };
}
