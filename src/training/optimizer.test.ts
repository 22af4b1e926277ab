// createOptimizer: each configured optimizer's fused kernels (meta device) and Prodigy's settings.
import { describe, expect, it } from 'vitest';
import { MetaBackend } from '../engine/backend.js';
import { Prodigy } from '../engine/optim/prodigy.js';
import { randomArena } from '../engine/testing/arenas.js';
import { zeros } from '../engine/tensor.js';
import { DEFAULT_CONFIG, OPTIMIZERS } from './config.js';
import { createOptimizer } from './optimizer.js';

describe('createOptimizer', () => {
  it('gives each configured optimizer its fused kernels (meta device)', () => {
    const kernel = { adamw: 'adamw', lion: 'lion', sgd: 'sgd', prodigy: 'prodigy_update' } as const;
    for (const kind of OPTIMIZERS) {
      const b = new MetaBackend();
      const arenas = [randomArena(b, [8, 8], 1), randomArena(b, [4], 2)];
      const opt = createOptimizer({ ...DEFAULT_CONFIG, optimizer: kind });
      expect(opt.name).toBe(kind);
      opt.update(
        arenas.map((arena) => ({ arena, lr: 1 })),
        { step: 1, gradNorm: zeros(b, [1]), nanFlag: zeros(b, [1]) },
      );
      expect(b.stats.byKernel.get(kernel[kind])?.dispatches).toBe(2);
      opt.dispose();
    }
  });

  it('runs Prodigy with the configured betas and decay, prodigyopt defaults otherwise', () => {
    const opt = createOptimizer({ ...DEFAULT_CONFIG, optimizer: 'prodigy', beta1: 0.8, beta2: 0.995, weightDecay: 0.02 });
    expect(opt).toBeInstanceOf(Prodigy);
    expect((opt as Prodigy).hyper).toEqual({ beta1: 0.8, beta2: 0.995, beta3: Math.sqrt(0.995), eps: 1e-8, weightDecay: 0.02, d0: 1e-6, dCoef: 1, growthRate: Infinity, biasCorrection: false, safeguardWarmup: false });
  });
});
