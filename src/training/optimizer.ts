// The engine optimizer a TrainConfig asks for, with the recipe's fixed settings.
import { adamw } from '../engine/optim/adamw.js';
import { lion } from '../engine/optim/lion.js';
import type { Optimizer } from '../engine/optim/optimizer.js';
import { Prodigy } from '../engine/optim/prodigy.js';
import { sgd } from '../engine/optim/sgd.js';
import type { TrainConfig } from './config.js';

/** Adam's epsilon (AdamW and Prodigy), as torch and prodigyopt default it. */
export const ADAM_EPS = 1e-8;

/**
 * A fresh optimizer for the config: AdamW, Lion (decoupled decay) and Prodigy take beta1, beta2
 * and the weight decay; SGD takes the momentum and applies the weight decay as torch.optim.SGD
 * does (added to the gradient). Prodigy runs with prodigyopt's defaults otherwise: d0 1e-6, d_coef 1,
 * beta3 = sqrt(beta2), decoupled decay, no bias correction, no safeguard warmup, unbounded growth.
 */
export function createOptimizer(c: Pick<TrainConfig, 'optimizer' | 'beta1' | 'beta2' | 'weightDecay' | 'momentum'>): Optimizer {
  switch (c.optimizer) {
    case 'adamw':
      return adamw({ beta1: c.beta1, beta2: c.beta2, eps: ADAM_EPS, weightDecay: c.weightDecay });
    case 'lion':
      return lion({ beta1: c.beta1, beta2: c.beta2, weightDecay: c.weightDecay });
    case 'sgd':
      return sgd({ momentum: c.momentum, weightDecay: c.weightDecay });
    case 'prodigy':
      return new Prodigy({ beta1: c.beta1, beta2: c.beta2, eps: ADAM_EPS, weightDecay: c.weightDecay });
    default:
      return c.optimizer satisfies never;
  }
}
