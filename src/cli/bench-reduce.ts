// Reduction kernels with subgroups against their workgroup-memory trees, on one device, alternated A B A B.
import type { GpuBackend } from '../engine/backend.js';
import { backward } from '../engine/grad.js';
import { sum } from '../engine/ops/elementwise.js';
import { groupNorm, layerNorm } from '../engine/ops/norm.js';
import { softmax } from '../engine/ops/softmax.js';
import { empty, scope, type Tensor } from '../engine/tensor.js';

/** [label, input shapes, op]: SD 1.5's norms at 32² latents (256 px) and reductions of a step's sizes. */
const CASES: [string, number[][], (xs: Tensor[]) => Tensor][] = [
  ['group norm + SiLU fwd+bwd 1x320x32x32, 32 groups', [[1, 320, 32, 32], [320], [320]], ([x, w, b]) => groupNorm(x!, 32, w!, b!, 1e-5, { activation: 'silu' })],
  ['group norm fwd+bwd 1x1280x8x8, 32 groups', [[1, 1280, 8, 8], [1280], [1280]], ([x, w, b]) => groupNorm(x!, 32, w!, b!, 1e-5)],
  ['layer norm fwd+bwd 1024x320', [[1024, 320], [320], [320]], ([x, w, b]) => layerNorm(x!, w!, b!)],
  ['sum fwd+bwd 1024x320 over rows (bias gradient)', [[1024, 320]], ([x]) => sum(x!, [0])],
  ['softmax fwd+bwd 1024x1024', [[1024, 1024]], ([x]) => softmax(x!)],
];

function noise(b: GpuBackend, shape: number[]): Tensor {
  const t = empty(b, shape);
  t.write(Float32Array.from({ length: t.size }, (_, i) => Math.sin(i * 12.9898) * 0.5 + 1));
  t.requiresGrad = true;
  return t;
}

/** One forward and backward of `op`, waited for. */
async function once(b: GpuBackend, xs: Tensor[], op: (xs: Tensor[]) => Tensor): Promise<void> {
  const y = scope(() => op(xs));
  const seed = empty(b, y.shape);
  b.clear(seed.storage, 0, seed.storage.bytes);
  backward(y, seed);
  for (const t of [y, seed]) t.dispose();
  for (const x of xs) {
    x.grad?.dispose();
    x.grad = null;
  }
  await b.sync();
}

/**
 * Per case: median ms with the backend's subgroups and with them off (`reps` alternated pairs after
 * one untimed run of each, which compiles), and their ratio. Null where the device has none.
 */
export async function benchReduce(b: GpuBackend, reps: number): Promise<object[]> {
  const sg = b.subgroups;
  if (!sg) return [{ error: 'this device has no usable subgroups (see probeSubgroups): nothing to compare' }];
  const rows: object[] = [];
  for (const [name, shapes, op] of CASES) {
    const xs = shapes.map((s) => noise(b, s));
    const times: [number[], number[]] = [[], []];
    for (let r = -1; r < reps; r++) {
      for (const side of [0, 1] as const) {
        b.subgroups = side === 0 ? sg : null;
        const t0 = performance.now();
        await once(b, xs, op);
        if (r >= 0) times[side].push(performance.now() - t0);
      }
    }
    b.subgroups = sg;
    for (const x of xs) x.dispose();
    const med = (a: number[]) => a.sort((p, q) => p - q)[Math.floor(a.length / 2)]!;
    const [on, off] = [med(times[0]), med(times[1])];
    rows.push({ name, subgroups: `${sg.min}-${sg.max}`, subgroups_ms: +on.toFixed(2), workgroup_ms: +off.toFixed(2), ratio: +(on / off).toFixed(3) });
  }
  return rows;
}
