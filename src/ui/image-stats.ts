// Which images' training loss stands out: well above the dataset's median, once every image has a few samples.
import type { ImageLoss } from '../protocol/index.js';

/** An image stands out when its mean loss is at least this many times the median of the images' means. */
export const OUTLIER_FACTOR = 1.5;
/** Samples an image needs before it is judged, and images a dataset needs before any is. */
export const OUTLIER_MIN_SAMPLES = 3;
export const OUTLIER_MIN_IMAGES = 4;

/** The median of the images' mean losses (those with enough samples), or null when too few images have enough. */
export function medianLoss(losses: Readonly<Record<string, ImageLoss>>): number | null {
  const means = Object.values(losses).filter((l) => l.count >= OUTLIER_MIN_SAMPLES).map((l) => l.mean).sort((a, b) => a - b);
  if (means.length < OUTLIER_MIN_IMAGES) return null;
  const m = means.length >> 1;
  return means.length % 2 ? means[m]! : (means[m - 1]! + means[m]!) / 2;
}

/** Whether this image's loss stands out against `median` (`medianLoss`): a mislabelled or broken image often does. */
export function standsOut(l: ImageLoss | undefined, median: number | null): boolean {
  return !!l && median !== null && l.count >= OUTLIER_MIN_SAMPLES && l.mean >= OUTLIER_FACTOR * median;
}
