// The engine's public surface: tensors, ops, autograd, devices. Knows nothing of diffusion.
export * from './tensor.js';
export * from './dtype.js';
export * from './backend.js';
export * from './gpu.js';
export * from './autograd.js';
export * from './grad.js';
export * from './ops/index.js';
export * from './optim/arena.js';
export * from './optim/adamw.js';
