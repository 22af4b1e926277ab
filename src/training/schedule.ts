// Learning-rate schedules as plain (step) => lr functions, with the definitions diffusers' get_scheduler uses.

export interface ScheduleSpec {
  kind: 'constant' | 'constant_with_warmup' | 'linear' | 'cosine' | 'cosine_with_restarts' | 'polynomial';
  baseLr: number;
  totalSteps: number;
  warmupSteps: number;
  cycles?: number;
  power?: number;
  /** Final LR of the polynomial schedule (diffusers: 1e-7). */
  lrEnd?: number;
}

/**
 * The LR at optimizer step `step` (0-based). Every kind warms up linearly from 0 over `warmupSteps`
 * (for `constant` too: the recipe always warms up, and a 0-step warmup is the plain constant).
 */
export function makeSchedule(s: ScheduleSpec): (step: number) => number {
  const { baseLr: lr, totalSteps: T, warmupSteps: W } = s;
  return (step) => {
    if (step < W) return (lr * step) / Math.max(1, W);
    const progress = (step - W) / Math.max(1, T - W);
    switch (s.kind) {
      case 'constant':
      case 'constant_with_warmup':
        return lr;
      case 'linear':
        return lr * Math.max(0, (T - step) / Math.max(1, T - W));
      case 'cosine':
        return lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
      case 'cosine_with_restarts': {
        if (progress >= 1) return 0;
        const c = s.cycles ?? 1;
        return lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((c * progress) % 1))));
      }
      case 'polynomial': {
        const end = s.lrEnd ?? 1e-7;
        if (step > T) return end;
        const decay = (lr - end) * (1 - (step - W) / Math.max(1, T - W)) ** (s.power ?? 1) + end;
        return decay;
      }
      default:
        return s.kind satisfies never;
    }
  };
}
