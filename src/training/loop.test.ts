// The training loop's order on a stand-in run (no GPU: the loop only schedules): saves, previews and validation when due and at the end, metrics one step late, pause, stop, NaN.
import { describe, expect, it } from 'vitest';
import { planRun } from './arithmetic.js';
import { DEFAULT_CONFIG, type TrainConfig } from './config.js';
import { NonFiniteLossError, RunControl, trainingLoop, type LoopTarget, type StepMetrics } from './loop.js';
import type { StepResult } from './step.js';

/** A run whose steps resolve at once with the given losses, logging what the loop asks of it in order. */
function standIn(c: Partial<TrainConfig>, losses: (step: number) => number, onPreview = true) {
  const config = { ...DEFAULT_CONFIG, ...c };
  const log: string[] = [];
  const metrics: StepMetrics[] = [];
  const plan = planRun(config, [{}]);
  const t: LoopTarget & { step: number; lastSavedStep: number } = {
    plan,
    config,
    events: { onMetrics: (m) => (log.push(`metrics ${m.step}`), metrics.push(m)), ...(onPreview ? { onPreview: () => {} } : {}) },
    step: 0,
    epoch: 0,
    lastSavedStep: 0,
    nextStep(): Promise<StepResult> {
      this.step++;
      log.push(`step ${this.step}`);
      const loss = losses(this.step);
      return Promise.resolve({ loss, nonFinite: !Number.isFinite(loss) });
    },
    learningRates: (i) => ({ unet: i, te: 0 }),
    save() {
      this.lastSavedStep = this.step;
      log.push(`save ${this.step}`);
      return Promise.resolve();
    },
    emitPreview() {
      log.push(`preview ${this.step}`);
      return Promise.resolve();
    },
    liveBytes: () => 0,
  };
  return { t, log, metrics };
}

describe('trainingLoop', () => {
  it('encodes step n+1 before reporting step n, saves and previews when due, and once more at the end', async () => {
    const { t, log, metrics } = standIn({ baseSteps: 4, divideStepsByBatch: false, saveEvery: 2, sampleEvery: 3, sampleSteps: 1 }, () => 0.5);
    expect(t.plan.steps).toBe(4);
    await trainingLoop(t, new RunControl());
    expect(log).toEqual(['step 1', 'step 2', 'metrics 1', 'metrics 2', 'save 2', 'step 3', 'metrics 3', 'preview 3', 'step 4', 'metrics 4', 'save 4', 'preview 4']);
    expect(metrics.map((m) => m.lrUnet)).toEqual([0, 1, 2, 3]); // update n's rate is the schedule's at index n - 1
    for (const m of metrics) expect(m.smoothLoss).toBeCloseTo(0.5, 12); // a debiased average of equal losses is that loss
  });

  it('without a preview listener renders none; stopped before the first step, saves nothing', async () => {
    const a = standIn({ baseSteps: 2, divideStepsByBatch: false, saveEvery: 0, sampleSteps: 20 }, () => 1, false);
    await trainingLoop(a.t, new RunControl());
    expect(a.log.filter((l) => l.startsWith('preview'))).toEqual([]);
    const b = standIn({ baseSteps: 2, divideStepsByBatch: false }, () => 1);
    const control = new RunControl();
    control.stop();
    await trainingLoop(b.t, control);
    expect(b.log).toEqual([]);
  });

  it('reports the finished step before waiting on a pause, and goes on after unpause', async () => {
    const { t, log } = standIn({ baseSteps: 3, divideStepsByBatch: false, saveEvery: 3, sampleSteps: 0 }, () => 1);
    const control = new RunControl();
    const waits: boolean[] = [];
    control.onWaiting = (w) => {
      waits.push(w);
      if (w) setTimeout(() => control.unpause(), 1);
    };
    t.events.onMetrics = (m) => {
      log.push(`metrics ${m.step}`);
      if (m.step === 1) control.pause();
    };
    await trainingLoop(t, control);
    expect(waits).toEqual([true, false]);
    expect(log).toEqual(['step 1', 'step 2', 'metrics 1', 'metrics 2', 'step 3', 'metrics 3', 'save 3']);
  });

  it('validates when due and at the end, after the step is reported, and saves a new best that is not a save step', async () => {
    const { t, log } = standIn({ baseSteps: 6, divideStepsByBatch: false, saveEvery: 4, sampleSteps: 0, validation: 'training', validateEvery: 2 }, () => 1);
    const best = new Map([[2, true], [4, true], [6, false]]);
    t.validate = () => (log.push(`validate ${t.step}`), Promise.resolve(best.get(t.step) ?? false));
    await trainingLoop(t, new RunControl());
    expect(log).toEqual(['step 1', 'step 2', 'metrics 1', 'metrics 2', 'validate 2', 'save 2', 'step 3', 'step 4', 'metrics 3', 'metrics 4', 'validate 4', 'save 4', 'step 5', 'step 6', 'metrics 5', 'metrics 6', 'validate 6', 'save 6']);
    // Validation off in the plan: never asked for, though the target could.
    const off = standIn({ baseSteps: 2, divideStepsByBatch: false, saveEvery: 0, sampleSteps: 0 }, () => 1);
    off.t.validate = () => (off.log.push('validate'), Promise.resolve(true));
    await trainingLoop(off.t, new RunControl());
    expect(off.log.filter((l) => l === 'validate')).toEqual([]);
  });

  it('ends with NonFiniteLossError naming the step and the last save', async () => {
    const { t } = standIn({ baseSteps: 6, divideStepsByBatch: false, saveEvery: 2, sampleSteps: 0 }, (s) => (s === 4 ? NaN : 1));
    const err = await trainingLoop(t, new RunControl()).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteLossError);
    expect((err as NonFiniteLossError).step).toBe(4);
    expect((err as NonFiniteLossError).lastSavedStep).toBe(2);
  });
});
