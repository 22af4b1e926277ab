// The run's phase as the worker reports it to the page (RunState), and the words refusals use for it.
import type { RunControl } from '../training/loop.js';
import type { RunPhase, RunState } from '../protocol/index.js';

/** What the worker is doing with the run, for the refusal messages. */
export const PHASE_WORDS: Record<RunPhase, string> = {
  idle: 'idle',
  caching: 'encoding its images',
  compiling: 'compiling its GPU kernels',
  running: 'training',
  paused: 'paused',
  stopping: 'stopping',
  done: 'done',
  failed: 'failed',
};

/**
 * The run's phase as the worker sees it, sent to the page at each change. A Stop holds the phase at
 * 'stopping' until the end; a pause shows as 'paused' only once the loop really waits.
 */
export class RunStateReporter {
  state: RunState = { phase: 'idle', since: Date.now() };
  private extra: Partial<RunState> = {};
  private beforePause: RunPhase = 'running';
  constructor(private readonly send: (s: RunState) => void, private readonly control: RunControl) {
    control.onWaiting = (waiting) => {
      if (waiting) {
        this.beforePause = this.state.phase;
        this.set('paused');
      } else this.set(this.beforePause);
    };
  }
  set(phase: RunPhase, extra: Partial<RunState> = {}): void {
    const ending = phase === 'done' || phase === 'failed';
    if (this.control.state === 'stopping' && !ending) phase = 'stopping';
    const since = phase === this.state.phase ? this.state.since : Date.now();
    const pausing = this.control.state === 'paused' && phase !== 'paused' && !ending ? { pausing: true } : {};
    this.extra = extra;
    this.state = { phase, since, ...pausing, ...extra };
    this.send(this.state);
  }
  /** Re-send the current phase (after a pause or stop request changes what the page should show). */
  refresh(): void {
    this.set(this.state.phase, this.extra);
  }
}
