// WGSL for reductions that start in subgroups: where the device has them, a sum or max over a run of lanes
// is first taken by subgroupAdd/subgroupMax, and only one partial per subgroup goes through workgroup memory.
import type { SubgroupSizes } from '../subgroups.js';

/** The directive a subgroup kernel's source starts with. */
export const SUBGROUP_ENABLE = 'enable subgroups;';

/** Entry-point parameters naming the subgroup size `sg` and the invocation's index in it, `sid`. */
export const SUBGROUP_BUILTINS = '@builtin(subgroup_size) sg: u32, @builtin(subgroup_invocation_id) sid: u32';

/** Partial slots a workgroup of `wg` invocations needs: one per subgroup of the smallest size. */
export const subgroupSlots = (wg: number, sg: SubgroupSizes) => wg / sg.min;

/**
 * Fold the per-subgroup partials of each run of L lanes. Before it, each subgroup's first invocation
 * (sid 0) has stored its subgroup's partial at slot lid / sg; afterwards the run's total is at slot
 * head / sg (head: the run's first lane). A run holds L / sg partials, fewer than L / sg.min where the
 * pipeline got larger subgroups; the tree is sized for the smallest and skips the missing slots.
 * `combine` folds slot `a + s` into slot `a`. Starts and ends on a barrier (uniform control flow).
 */
export function subgroupTree(L: number, sg: SubgroupSizes, combine: (a: string, b: string) => string): string {
  const top = L / sg.min / 2;
  const loop = top >= 1
    ? `
  for (var s = ${top}u; s > 0u; s >>= 1u) {
    if (lane < s && lane + s < ${L}u / sg) { ${combine('head / sg + lane', 'head / sg + lane + s')} }
    workgroupBarrier();
  }`
    : '';
  return `
  workgroupBarrier();${loop}`;
}
