// Training speed as a person wants to see it: steps per second over the last few steps, so that the
// first steps' shader compilation and any pause do not drag the rate and the ETA for the whole run.

/** Steps per second over a sliding window of step completions. */
export class StepRate {
  private marks: { step: number; at: number }[] = [];

  /** `window`: how many recent step intervals the rate averages. */
  constructor(private readonly window = 20) {
    if (!(window >= 1)) throw new Error(`StepRate: window must be at least 1, got ${window}`);
  }

  /** Step `step` finished at time `at` (milliseconds). */
  mark(step: number, at: number): void {
    this.marks.push({ step, at });
    if (this.marks.length > this.window + 1) this.marks.shift();
  }

  /** Forget the window (after a pause, whose waiting is not step time); the next mark starts afresh. */
  reset(): void {
    this.marks = [];
  }

  /** Steps per second over the window, or null before two marks. */
  perSecond(): number | null {
    if (this.marks.length < 2) return null;
    const a = this.marks[0]!;
    const b = this.marks.at(-1)!;
    return b.at > a.at ? ((b.step - a.step) * 1000) / (b.at - a.at) : null;
  }

  /** Milliseconds to reach `total` steps from `step` at the current rate, or null when no rate is known yet. */
  etaMs(step: number, total: number): number | null {
    const r = this.perSecond();
    return r ? (Math.max(0, total - step) / r) * 1000 : null;
  }
}
