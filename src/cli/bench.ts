// Kernel benchmarks on Dawn: GFLOP/s, bytes, dispatches and the speed-up over naive kernels, measured in one run.
import { nodeGpu } from '../engine/node.js';
import { noGrad } from '../engine/autograd.js';
import { backward } from '../engine/grad.js';
import { attention, attentionNaive } from '../engine/ops/attention.js';
import { conv2d, conv2dNaive } from '../engine/ops/conv.js';
import { linear, matmul, matmulNaive } from '../engine/ops/matmul.js';
import { empty, scope, type Tensor } from '../engine/tensor.js';
import type { GpuBackend } from '../engine/backend.js';

interface Case {
  name: string;
  /** Tensors to make once (filled with noise). */
  inputs: number[][];
  run: (xs: Tensor[]) => Tensor;
  naive?: (xs: Tensor[]) => Tensor;
  /** Differentiate with respect to the inputs (times forward + backward). */
  backward?: boolean;
}

const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const s = quick ? 4 : 1;

const cases: Case[] = [
  { name: `matmul ${1024 / s}^3`, inputs: [[1024 / s, 1024 / s], [1024 / s, 1024 / s]], run: ([a, b]) => matmul(a!, b!), naive: ([a, b]) => matmulNaive(a!, b!) },
  { name: `linear ${4096 / s}x320 -> 320`, inputs: [[4096 / s, 320], [320, 320]], run: ([x, w]) => linear(x!, w!), naive: ([x, w]) => matmulNaive(x!, w!, { transB: true }) },
  { name: `conv2d 3x3 1x320x${64 / s}x${64 / s} -> 320`, inputs: [[1, 320, 64 / s, 64 / s], [320, 320, 3, 3]], run: ([x, w]) => conv2d(x!, w!, undefined, { padding: 1 }), naive: ([x, w]) => conv2dNaive(x!, w!, undefined, { padding: 1 }) },
  { name: `attention fwd 1x8x${4096 / s}x40`, inputs: [[1, 4096 / s, 320], [1, 4096 / s, 320], [1, 4096 / s, 320]], run: ([q, k, v]) => attention(q!, k!, v!, { heads: 8 }), naive: ([q, k, v]) => attentionNaive(q!, k!, v!, { heads: 8 }) },
  { name: `attention fwd+bwd 1x8x${4096 / s}x40`, inputs: [[1, 4096 / s, 320], [1, 4096 / s, 320], [1, 4096 / s, 320]], run: ([q, k, v]) => attention(q!, k!, v!, { heads: 8 }), backward: true },
];

function fill(b: GpuBackend, shape: number[]): Tensor {
  const t = empty(b, shape);
  const n = t.size;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.sin(i * 12.9898) * 0.5;
  t.write(data);
  return t;
}

async function time(b: GpuBackend, xs: Tensor[], fn: (xs: Tensor[]) => Tensor, withGrad: boolean) {
  const once = async () => {
    if (withGrad) {
      for (const x of xs) x.requiresGrad = true;
      const y = scope(() => fn(xs));
      const seed = empty(b, y.shape);
      b.clear(seed.storage, 0, seed.storage.bytes);
      backward(y, seed);
      y.dispose();
      seed.dispose();
      for (const x of xs) {
        x.grad?.dispose();
        x.grad = null;
        x.requiresGrad = false;
      }
    } else noGrad(() => scope(() => fn(xs))).dispose();
    await b.sync();
  };
  await once(); // compile pipelines and warm the pool
  b.resetStats();
  const t0 = performance.now();
  await once();
  const ms = performance.now() - t0;
  return { ms, flops: b.stats.flops, bytes: b.stats.bytes, dispatches: b.stats.dispatches, byKernel: new Map([...b.stats.byKernel].map(([k, v]) => [k, { ...v }])) };
}

async function main() {
  if (process.argv.includes('--sd15')) {
    // Full-size SD 1.5 is its own bench (minutes to hours on a software GPU); the kernel cases stay quick.
    const { benchSd15 } = await import('./bench-sd15.js');
    await benchSd15(process.argv.slice(2));
    process.exit(0);
  }
  const { backend: b, adapter } = await nodeGpu();
  if (process.argv.includes('--encode')) {
    // CPU time to record a training step, apart from the kernel cases (minutes of compiling first on a software GPU).
    const { benchEncode } = await import('./bench-encode.js');
    const r = await benchEncode(b);
    console.log(json ? JSON.stringify(r) : `${r.name}: ${r.dispatchesPerStep} dispatches; µs/dispatch, bind group cache on / off: whole step's JS ${r.stepUsPerDispatch} / ${r.stepUsPerDispatchNoCache}, in backend.run ${r.runUsPerDispatch} / ${r.runUsPerDispatchNoCache}; cache hits ${(100 * r.bindGroupHitRate).toFixed(1)}%; replayed from the recorded plan (${r.replayed} of ${r.steps} steps): whole step's JS ${r.replayUsPerDispatch}`);
    process.exit(0);
  }
  if (process.argv.includes('--reductions')) {
    // Subgroup reductions against the workgroup-memory trees on this device (ratio < 1: subgroups faster).
    const { benchReduce } = await import('./bench-reduce.js');
    const reps = Number(process.argv.find((a) => a.startsWith('--reps='))?.slice(7) ?? 5);
    for (const row of await benchReduce(b, reps)) console.log(JSON.stringify(row));
    process.exit(0);
  }
  if (!json) console.log(`adapter: ${adapter.description || adapter.vendor} ${adapter.isFallback ? '(fallback)' : ''}; timestamp queries: ${b.canProfile}`);
  for (const c of cases) {
    const xs = c.inputs.map((sh) => fill(b, sh));
    const r = await time(b, xs, c.run, !!c.backward);
    let gpuMs: number | null = null;
    if (b.canProfile) {
      b.startProfile();
      noGrad(() => scope(() => c.run(xs))).dispose();
      const samples = await b.stopProfile();
      gpuMs = samples.reduce((a, x) => a + x.ns, 0) / 1e6;
    }
    const naive = c.naive ? await time(b, xs, c.naive, false) : null;
    for (const x of xs) x.dispose();
    const row = {
      name: c.name,
      flops: r.flops,
      ms: +r.ms.toFixed(1),
      gflops: +(r.flops / r.ms / 1e6).toFixed(3),
      bytes: r.bytes,
      dispatches: r.dispatches,
      kernels: Object.fromEntries([...r.byKernel].map(([k, v]) => [k, v.dispatches])),
      gpu_ms_forward: gpuMs === null || c.backward ? null : +gpuMs.toFixed(1),
      naive_ms: naive ? +naive.ms.toFixed(1) : null,
      vs_naive: naive ? +(naive.ms / r.ms).toFixed(2) : null,
    };
    if (json) console.log(JSON.stringify(row));
    else console.log(`${row.name.padEnd(34)} ${(row.flops / 1e9).toFixed(2).padStart(8)} GFLOP ${String(row.ms).padStart(9)} ms ${String(row.gflops).padStart(7)} GFLOP/s ${String(row.dispatches).padStart(3)} dispatches ${(row.bytes / 2 ** 20).toFixed(1).padStart(8)} MiB${row.vs_naive ? `  ${row.vs_naive}x vs naive` : ''}`);
  }
  process.exit(0);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
