// kohya caption processing: tags split on commas, leading tags kept, the rest shuffled and dropped by chance.
import type { Rng } from './rng.js';

export interface CaptionOptions {
  shuffle: boolean;
  keepTokens: number;
  captionDropout: number;
  tagDropout: number;
  triggerWord: string;
}

/** Prepend the trigger word unless the caption already starts with it. */
export function withTrigger(caption: string, trigger: string): string {
  const t = trigger.trim();
  if (!t) return caption.trim();
  const c = caption.trim();
  if (c.toLowerCase().split(',').map((s) => s.trim())[0] === t.toLowerCase()) return c;
  return c ? `${t}, ${c}` : t;
}

/** The caption one training sample sees. */
export function processCaption(caption: string, o: CaptionOptions, rng: Rng): string {
  if (o.captionDropout > 0 && rng.next() < o.captionDropout) return '';
  const tags = withTrigger(caption, o.triggerWord).split(',').map((t) => t.trim()).filter(Boolean);
  const keep = o.triggerWord.trim() ? Math.max(o.keepTokens, 1) : o.keepTokens;
  const fixed = tags.slice(0, keep);
  let rest = tags.slice(keep);
  if (o.tagDropout > 0) rest = rest.filter(() => rng.next() >= o.tagDropout);
  if (o.shuffle) rng.shuffle(rest);
  return [...fixed, ...rest].join(', ');
}

/** Tag counts over the dataset, for `ss_tag_frequency`. */
export function tagFrequency(captions: readonly string[]): Record<string, number> {
  const f: Record<string, number> = {};
  for (const c of captions) for (const t of c.split(',').map((s) => s.trim()).filter(Boolean)) f[t] = (f[t] ?? 0) + 1;
  return f;
}
