// The run's saves on the page stay within their budget, always keep the last and the best, and thin out evenly over the run.
import { describe, expect, it } from 'vitest';
import { fitSaves, keepSave, savesBytes, savesLine, type KeptSave } from './saves.js';

const MB = 1024 * 1024;
const save = (step: number, mb = 1): KeptSave => ({ step, bytes: new Uint8Array(mb * MB) });
const steps = (s: readonly KeptSave[]) => s.map((x) => x.step);

describe('fitSaves', () => {
  it('keeps everything that fits, in step order', () => {
    const s = [save(30), save(10), save(20)];
    expect(steps(fitSaves(s, 3 * MB))).toEqual([10, 20, 30]);
  });

  it('drops saves until the total fits, spreading what stays evenly over the run', () => {
    // Ten saves of 1 MB at steps 10..100 into 5 MB: the kept ones are about every 20 steps, the last included.
    const s = Array.from({ length: 10 }, (_, i) => save(10 * (i + 1)));
    const kept = fitSaves(s, 5 * MB);
    expect(savesBytes(kept)).toBeLessThanOrEqual(5 * MB);
    expect(kept).toHaveLength(5);
    expect(steps(kept)).toEqual([20, 40, 60, 80, 100]);
  });

  it('never drops the last save or the best one, even when they alone exceed the budget', () => {
    const s = [save(10), save(20), save(30), save(40)];
    expect(steps(fitSaves(s, 2 * MB, 10))).toEqual([10, 40]);
    expect(steps(fitSaves(s, 0, 20))).toEqual([20, 40]);
    expect(steps(fitSaves(s, 0))).toEqual([40]);
  });

  it('counts bytes, not saves: dropping one big save can be enough', () => {
    // The 3 MB save at step 10 goes first (the earliest of two equal gaps) and alone makes room.
    const s = [save(10, 3), save(20), save(30)];
    expect(steps(fitSaves(s, 2 * MB))).toEqual([20, 30]);
  });
});

describe('keepSave', () => {
  it('adds a save, replaces one at the same step and fits the budget in MB', () => {
    let s: KeptSave[] = [];
    for (const step of [5, 10, 15, 20]) s = keepSave(s, save(step), 3, 5);
    expect(steps(s)).toEqual([5, 15, 20]);
    const again = { step: 15, bytes: new Uint8Array(10) };
    s = keepSave(s, again, 3, 5);
    expect(s.find((x) => x.step === 15)).toBe(again);
    expect(s).toHaveLength(3);
  });
});

describe('savesLine', () => {
  it('states the count, the size and the budget', () => {
    expect(savesLine([save(1), save(2)], 256)).toBe('2 saves kept, 2.0 MB of the 256 MB budget');
    expect(savesLine([save(1, 20)], 16)).toMatch(/^1 save kept, 20\.0 MB of the 16 MB budget \(over it/);
  });
});
