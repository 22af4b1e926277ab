// LR schedules against their formulas: warmup and every kind after it, scaling with the peak LR, and the specs refused.
import { describe, expect, it } from 'vitest';
import { makeSchedule, SCHEDULERS, type ScheduleSpec } from './schedule.js';

// 110 steps, 10 of warmup, peak 1: after warmup, progress p = (step - 10) / 100.
const base = { baseLr: 1, totalSteps: 110, warmupSteps: 10 };
const at = (spec: Partial<ScheduleSpec> & Pick<ScheduleSpec, 'kind'>, steps: number[]) => steps.map(makeSchedule({ ...base, ...spec }));

describe('warmup (every kind but constant)', () => {
  it('rises linearly from 0 at step 0 to the peak at the warmup step', () => {
    for (const kind of SCHEDULERS.filter((k) => k !== 'constant')) expect(at({ kind }, [0, 1, 5, 9])).toEqual([0, 0.1, 0.5, 0.9]);
    for (const kind of ['constant_with_warmup', 'linear', 'cosine', 'cosine_with_restarts'] as const) expect(at({ kind }, [10])).toEqual([1]);
  });
  it('constant ignores warmup (diffusers get_constant_schedule has none)', () => {
    expect(at({ kind: 'constant' }, [0, 5, 10, 109, 500])).toEqual([1, 1, 1, 1, 1]);
  });
  it('no warmup starts at the peak', () => {
    expect(makeSchedule({ ...base, warmupSteps: 0, kind: 'cosine' })(0)).toBe(1);
  });
});

describe('after warmup', () => {
  it('constant_with_warmup stays at the peak', () => {
    expect(at({ kind: 'constant_with_warmup' }, [10, 60, 110])).toEqual([1, 1, 1]);
  });
  it('linear: (T - step) / (T - W), down to 0', () => {
    expect(at({ kind: 'linear' }, [60, 109, 110, 200])).toEqual([0.5, 0.01, 0, 0]);
  });
  it('cosine: 0.5 (1 + cos(π p))', () => {
    const [a, b, c, d] = at({ kind: 'cosine' }, [35, 60, 85, 110]);
    expect(a).toBeCloseTo(0.5 * (1 + Math.SQRT1_2), 15);
    expect(b).toBeCloseTo(0.5, 15);
    expect(c).toBeCloseTo(0.5 * (1 - Math.SQRT1_2), 15);
    expect(d).toBeCloseTo(0, 15);
  });
  it('cosine_with_restarts: 0.5 (1 + cos(π ((cycles p) mod 1))), 0 from p = 1', () => {
    const [a, b, c, d, e] = at({ kind: 'cosine_with_restarts', cycles: 2 }, [35, 59, 60, 85, 110]);
    expect(a).toBeCloseTo(0.5, 15);
    expect(b).toBeCloseTo(0.5 * (1 + Math.cos(Math.PI * 0.98)), 14);
    expect(c).toBe(1); // the restart
    expect(d).toBeCloseTo(0.5, 15);
    expect(e).toBe(0);
    expect(at({ kind: 'cosine_with_restarts' }, [60])[0]).toBeCloseTo(0.5, 15); // 1 cycle = cosine
  });
  it('polynomial: (lr - end) (1 - p)^power + end, end = 1e-7, held past the run', () => {
    const [a, b, c] = at({ kind: 'polynomial', power: 2 }, [60, 110, 150]);
    expect(a).toBeCloseTo((1 - 1e-7) * 0.25 + 1e-7, 15);
    expect(b).toBeCloseTo(1e-7, 20);
    expect(c).toBeCloseTo(1e-7, 20);
    expect(at({ kind: 'polynomial' }, [60])[0]).toBeCloseTo((1 - 1e-7) * 0.5 + 1e-7, 15);
  });
  it('scales with the peak LR: the recipe default (cosine, 2000 steps, 200 warmup, 1e-4)', () => {
    const lr = makeSchedule({ kind: 'cosine', baseLr: 1e-4, totalSteps: 2000, warmupSteps: 200 });
    expect(lr(0)).toBe(0);
    expect(lr(100)).toBeCloseTo(5e-5, 18);
    expect(lr(200)).toBeCloseTo(1e-4, 18);
    expect(lr(1100)).toBeCloseTo(5e-5, 18);
    expect(lr(1999)).toBeGreaterThan(0);
  });
});

describe('bad specs', () => {
  it('throw RangeError', () => {
    const bad: Partial<ScheduleSpec>[] = [{ totalSteps: 0 }, { totalSteps: 2.5 }, { warmupSteps: 111 }, { warmupSteps: -1 }, { baseLr: NaN }, { baseLr: -1 }, { cycles: 0 }, { power: 0 }];
    for (const b of bad) expect(() => makeSchedule({ ...base, kind: 'cosine_with_restarts', ...b })).toThrow(RangeError);
    expect(() => makeSchedule({ ...base, kind: 'polynomial', baseLr: 1e-8 })).toThrow(/above the end LR/);
  });
  it('an LR of 0 is 0 throughout, whatever the kind', () => {
    for (const kind of SCHEDULERS) expect(at({ kind, baseLr: 0 }, [0, 50, 110])).toEqual([0, 0, 0]);
  });
  it('warmup as long as the run does not divide by zero', () => {
    expect(at({ kind: 'cosine', warmupSteps: 110 }, [55, 110])).toEqual([0.5, 1]);
    expect(at({ kind: 'polynomial', warmupSteps: 110 }, [110])[0]).toBeCloseTo(1, 12);
  });
});
