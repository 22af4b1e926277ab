// kohya caption processing: comma-separated tags, leading tags kept in place, the rest shuffled and dropped by chance.
import type { Rng } from './rng.js';

export interface CaptionOptions {
  /** Shuffle the tags after the kept ones, per sample. */
  shuffle: boolean;
  /** Leading tags never shuffled or dropped (the trigger word, when set, is always among them). */
  keepTokens: number;
  /** Probability that a sample's whole caption is dropped (trained unconditioned). */
  captionDropout: number;
  /** Probability that each non-kept tag is dropped. */
  tagDropout: number;
  /** Tag(s) put first in every caption; '' for none. */
  triggerWord: string;
}

/** Split on commas, trim, drop empty tags. */
export function splitTags(caption: string): string[] {
  return caption.split(',').map((t) => t.trim()).filter(Boolean);
}

/**
 * The caption's tags with the trigger first: tags of the trigger already in the caption (compared
 * case-insensitively) move to the front, missing ones are added there.
 */
export function withTrigger(caption: string, trigger: string): string {
  const trig = splitTags(trigger);
  const lower = new Set(trig.map((t) => t.toLowerCase()));
  const rest = splitTags(caption).filter((t) => !lower.has(t.toLowerCase()));
  return [...trig, ...rest].join(', ');
}

/**
 * The caption one training sample sees, in kohya's order: whole-caption dropout (returns ''), then
 * the kept leading tags, then the others shuffled and each dropped with `tagDropout`.
 */
export function processCaption(caption: string, o: CaptionOptions, rng: Rng): string {
  if (o.captionDropout > 0 && rng.next() < o.captionDropout) return '';
  const tags = splitTags(withTrigger(caption, o.triggerWord));
  const keep = Math.max(o.keepTokens, splitTags(o.triggerWord).length);
  const fixed = tags.slice(0, keep);
  let rest = tags.slice(keep);
  if (o.shuffle) rng.shuffle(rest);
  if (o.tagDropout > 0) rest = rest.filter(() => rng.next() >= o.tagDropout);
  return [...fixed, ...rest].join(', ');
}

/**
 * Tag counts over the raw captions for `ss_tag_frequency`, as kohya counts them: every occurrence,
 * lower-cased, empty tags skipped (kohya nests the result under the dataset folder's name).
 */
export function tagFrequency(captions: readonly string[]): Record<string, number> {
  const f = new Map<string, number>();
  for (const c of captions) for (const t of splitTags(c)) f.set(t.toLowerCase(), (f.get(t.toLowerCase()) ?? 0) + 1);
  return Object.fromEntries(f);
}
