// The backward rule of every differentiable op, in one table the compiler checks is complete:
// an op kind declared in OpSaved without a rule here is a type error.
import type { BackwardRule, OpKind } from '../autograd.js';
import { checkpointBackward } from '../grad.js';
import { elementwiseRules } from './elementwise.js';
import { viewRules } from './view.js';
import { matmulRules } from './matmul.js';
import { convRules } from './conv.js';
import { attentionRules } from './attention.js';
import { softmaxRules } from './softmax.js';
import { normRules } from './norm.js';
import { gegluRules } from './geglu.js';
import { layoutRules } from './layout.js';
import { dropoutRules } from './dropout.js';
import { lossRules } from './loss.js';
import { lowRankRules } from './lowrank.js';
import { powRules } from './pow.js';

export const backwardRules: { [K in OpKind]: BackwardRule<K> } = {
  ...elementwiseRules,
  ...viewRules,
  ...matmulRules,
  ...convRules,
  ...attentionRules,
  ...softmaxRules,
  ...normRules,
  ...gegluRules,
  ...layoutRules,
  ...dropoutRules,
  ...lossRules,
  ...lowRankRules,
  ...powRules,
  checkpoint: checkpointBackward,
};
