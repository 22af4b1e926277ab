// The sum-reduction kernel for a backend: with subgroups where the device has usable ones.
import type { Backend } from '../backend.js';
import type { Kernel } from '../kernel.js';
import { REDUCE_WG, reduceKernel, type ReduceParams } from '../kernels/reduce.js';
import { subgroupsFor } from '../subgroups.js';

/** `reduceKernel(p)` as backend `b` runs it best: its sum starts in subgroups where `subgroupsFor` allows. */
export function reduceOn(b: Backend, p: ReduceParams): Kernel {
  return reduceKernel(p, subgroupsFor(b, REDUCE_WG));
}
