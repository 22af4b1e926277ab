// StepRate: the recent-window steps/s, without the compile step or a pause.
import { describe, expect, it } from 'vitest';
import { StepRate } from './rate.js';

describe('StepRate', () => {
  it('averages the recent window, so a slow first step (compilation) drops out', () => {
    const r = new StepRate(4);
    expect(r.perSecond()).toBeNull();
    r.mark(1, 150_000); // first step: 150 s of compilation
    expect(r.perSecond()).toBeNull();
    for (let s = 2; s <= 5; s++) r.mark(s, 150_000 + (s - 1) * 500);
    expect(r.perSecond()).toBeCloseTo(2, 10); // 4 steps in 2 s
    r.mark(6, 150_000 + 4 * 500 + 1000); // one step of 1 s: the window (steps 2 to 6) spans 2.5 s
    expect(r.perSecond()).toBeCloseTo(4 / 2.5, 10);
    expect(r.etaMs(6, 10)).toBeCloseTo((4 / (4 / 2.5)) * 1000, 6);
    expect(r.etaMs(10, 10)).toBe(0);
  });

  it('a pause resets the window instead of counting the wait as a slow step', () => {
    const r = new StepRate(10);
    r.mark(1, 0);
    r.mark(2, 100);
    r.reset();
    expect(r.perSecond()).toBeNull();
    expect(r.etaMs(2, 10)).toBeNull();
    r.mark(3, 60_000);
    r.mark(4, 60_100);
    expect(r.perSecond()).toBeCloseTo(10, 10);
  });
});
