// The public op surface of the engine.
export * from './elementwise.js';
export * from './view.js';
export * from './matmul.js';
export * from './conv.js';
export * from './attention.js';
export * from './softmax.js';
export * from './norm.js';
export * from './geglu.js';
export * from './timestep.js';
export * from './layout.js';
export * from './dropout.js';
export * from './loss.js';
export * from './gather.js';
export * from './lowrank.js';
export * from './pow.js';
export { backwardRules } from './rules.js';
