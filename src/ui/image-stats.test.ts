// The dataset grid's outlier rule: an image whose mean training loss is well above the median stands out, once there are enough samples and images.
import { describe, expect, it } from 'vitest';
import type { ImageLoss } from '../protocol/index.js';
import { medianLoss, standsOut } from './image-stats.js';

const table = (...rows: [string, number, number][]): Record<string, ImageLoss> => Object.fromEntries(rows.map(([name, mean, count]) => [name, { name, mean, count }]));

describe('per-image loss outliers', () => {
  it('flag an image at 1.5x the median or more, and no other', () => {
    const t = table(['a', 0.1, 5], ['b', 0.12, 5], ['c', 0.11, 4], ['d', 0.3, 6], ['e', 0.16, 5]);
    const m = medianLoss(t);
    expect(m).toBeCloseTo(0.12, 12);
    expect(Object.values(t).filter((l) => standsOut(l, m)).map((l) => l.name)).toEqual(['d']);
    expect(standsOut(undefined, m)).toBe(false);
  });
  it('judge nothing before every image has a few samples, or with fewer than four images', () => {
    expect(medianLoss(table(['a', 0.1, 5], ['b', 0.1, 5], ['c', 0.9, 5]))).toBeNull();
    const t = table(['a', 0.1, 5], ['b', 0.1, 5], ['c', 0.1, 5], ['d', 0.1, 5], ['e', 0.9, 2]);
    expect(standsOut(t.e, medianLoss(t))).toBe(false);
    expect(medianLoss(table(['a', 0.1, 2], ['b', 0.1, 2], ['c', 0.1, 2], ['d', 0.1, 2]))).toBeNull();
  });
});
