// formatBytes: the unit a size reaches with its decimals, a fixed unit or precision when asked, bytes below 1 KiB.
import { describe, expect, it } from 'vitest';
import { formatBytes } from './bytes.js';

describe('formatBytes', () => {
  it('takes the largest unit a size reaches, with 2, 1 or 0 decimals', () => {
    expect([2 * 2 ** 30, 1.5 * 2 ** 30, 2 ** 30, 2 ** 30 - 2 ** 20, 12.34 * 2 ** 20, 2 ** 20, 640 * 1024, 1024, 1023, 0].map((b) => formatBytes(b))).toEqual([
      '2.00 GiB', '1.50 GiB', '1.00 GiB', '1023.0 MiB', '12.3 MiB', '1.0 MiB', '640 KiB', '1 KiB', '1023 B', '0 B',
    ]);
  });
  it('keeps a unit or a precision when asked', () => {
    expect(formatBytes(0, { unit: 'MiB' })).toBe('0.0 MiB');
    expect(formatBytes(3 * 2 ** 30, { unit: 'MiB', digits: 0 })).toBe('3072 MiB');
    expect(formatBytes(8 * 2 ** 30, { digits: 1 })).toBe('8.0 GiB');
    expect(formatBytes(-3 * 2 ** 20)).toBe('-3.0 MiB');
  });
});
