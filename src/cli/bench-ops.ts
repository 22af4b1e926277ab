// Per-op benchmark on Dawn: our kernel against ONNX Runtime Web's WebGPU EP on the same op and GPUDevice, alternating.
import { loadavg } from 'node:os';
import type * as Ort from 'onnxruntime-web';
import { noGrad } from '../engine/autograd.js';
import type { GpuBackend } from '../engine/backend.js';
import { nodeGpu } from '../engine/node.js';
import { scope, tensor } from '../engine/tensor.js';
import { onnxModel } from '../engine/testing/onnx.js';
import { withDomain } from '../bench/onnx-domain.js';
import { opCases, type OpCase } from '../bench/op-cases.js';
import { ortOnDevice, releaseOrt, type OrtOnDevice } from '../bench/ort-webgpu.js';

const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const quick = argv.includes('--quick');
const only = flag('--only');
const reps = Number(flag('--reps') ?? 5);
const warmup = Number(flag('--warmup') ?? 1);
/** Only ORT forms whose name contains this (e.g. "MatMul" for attention without ORT's fused kernel). */
const ortForm = flag('--ort-form');

/** Seeded uniform noise, f32 (a small LCG: the big conv weights are 15M values). */
function noise(n: number, seed: number, lo: number, hi: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((hi - lo) * s) / 2 ** 32;
  }
  return out;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** A GPU buffer ORT reads or writes in place (no upload or read-back inside the timed run). */
function gpuBuffer(device: GPUDevice, data: Float32Array<ArrayBuffer> | number): GPUBuffer {
  const size = typeof data === 'number' ? data * 4 : data.byteLength;
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const buf = device.createBuffer({ size: Math.max(16, Math.ceil(size / 16) * 16), usage });
  if (typeof data !== 'number') device.queue.writeBuffer(buf, 0, data);
  return buf;
}

interface OrtSide {
  form: string;
  /** Forms tried first that ORT could not put wholly on WebGPU, with its reason. */
  skipped: string[];
  run: () => Promise<void>;
  /** The output of the last run, read back (outside any timing). */
  read: () => Promise<Float32Array>;
  release: () => Promise<void>;
}

/** The first ORT form of `c` whose session builds with every node on WebGPU, with inputs and output bound on the GPU. */
async function ortSide(o: OrtOnDevice, device: GPUDevice, c: OpCase, data: Float32Array<ArrayBuffer>[]): Promise<OrtSide> {
  const errors: string[] = [];
  for (const form of c.ort.filter((f) => !ortForm || f.name.includes(ortForm))) {
    let session: Ort.InferenceSession;
    try {
      const model = onnxModel(form.graph);
      session = await o.ort.InferenceSession.create(form.contribOps ? withDomain(model, new Set(form.contribOps)) : model, o.sessionOptions);
    } catch (e) {
      errors.push(`${form.name}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
      continue;
    }
    const bufs = data.map((d) => gpuBuffer(device, d));
    const out = gpuBuffer(device, c.outShape.reduce((a, b) => a * b, 1));
    const feeds = Object.fromEntries(c.inputs.map((x, i) => [x.name, o.ort.Tensor.fromGpuBuffer(bufs[i]!, { dataType: 'float32', dims: x.shape })]));
    const fetches = { y: o.ort.Tensor.fromGpuBuffer(out, { dataType: 'float32', dims: c.outShape }) };
    return {
      form: form.name,
      skipped: errors,
      run: async () => {
        await session.run(feeds, fetches);
        await device.queue.onSubmittedWorkDone();
      },
      read: async () => {
        const staging = device.createBuffer({ size: out.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
        const enc = device.createCommandEncoder();
        enc.copyBufferToBuffer(out, 0, staging, 0, out.size);
        device.queue.submit([enc.finish()]);
        await staging.mapAsync(GPUMapMode.READ);
        const y = new Float32Array(staging.getMappedRange().slice(0));
        staging.destroy();
        return y;
      },
      release: async () => {
        await session.release();
        for (const b of [...bufs, out]) b.destroy();
      },
    };
  }
  throw new Error(`${c.op} ${c.shape}: no ORT form runs on WebGPU (${errors.join('; ')})`);
}

/** Largest |a - b| over the elements both have (the outputs agree when the two sides compute the same op). */
function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** The 1-, 5- and 15-minute load averages at the end of a row: on a shared software GPU they say how much the times mean. */
const loadAverages = (): number[] => loadavg().map((x) => +x.toFixed(2));

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** One row: warm both sides (compiles excluded), then alternate ours, ORT, ours, ORT... and take medians. */
async function benchCase(b: GpuBackend, o: OrtOnDevice, device: GPUDevice, c: OpCase, seed: number): Promise<Record<string, unknown>> {
  const data = c.inputs.map((x, i) => noise(x.shape.reduce((a, d) => a * d, 1), seed * 16 + i + 1, x.lo, x.hi));
  const xs = c.inputs.map((x, i) => tensor(b, data[i]!, x.shape));
  const ours = async () => {
    noGrad(() => scope(() => c.ours(xs))).dispose();
    await b.sync();
  };
  const ort = await ortSide(o, device, c, data);
  try {
    // Warm-up compiles both sides' pipelines; its last run of ours gives the counts (the same every run).
    let counts = { dispatches: 0, flops: 0 };
    for (let i = 0; i < Math.max(1, warmup); i++) {
      b.resetStats();
      await ours();
      counts = { dispatches: b.stats.dispatches, flops: b.stats.flops };
      await ort.run();
    }
    const { dispatches, flops } = counts;
    const y = noGrad(() => scope(() => c.ours(xs)));
    const diff = maxAbsDiff(await y.read(), await ort.read());
    y.dispose();
    const a: number[] = [];
    const r: number[] = [];
    for (let i = 0; i < reps; i++) {
      a.push(await timed(ours));
      r.push(await timed(ort.run));
    }
    const oursMs = median(a);
    const ortMs = median(r);
    return { op: c.op, shape: c.shape, oursMs: +oursMs.toFixed(3), ortMs: +ortMs.toFixed(3), ratio: +(oursMs / ortMs).toFixed(3), gflops: +(flops / oursMs / 1e6).toFixed(3), dispatches, ortGraph: ort.form, maxAbsDiff: +diff.toPrecision(3), load: loadAverages(), ...(ort.skipped.length ? { ortSkipped: ort.skipped } : {}) };
  } finally {
    await ort.release();
    for (const x of xs) x.dispose();
  }
}

async function main(): Promise<void> {
  const { backend: b, device, gpuAdapter, adapter } = await nodeGpu();
  console.log(JSON.stringify({ adapter: { vendor: adapter.vendor, architecture: adapter.architecture, device: adapter.device, description: adapter.description, isFallback: adapter.isFallback, features: adapter.features }, quick, reps, warmup, vkIcd: process.env.VK_ICD_FILENAMES ?? null }));
  const o = await ortOnDevice(device, gpuAdapter);
  const cases = opCases(quick).filter((c) => !only || `${c.op} ${c.shape}`.includes(only));
  const rows: Record<string, unknown>[] = [];
  for (const [i, c] of cases.entries()) {
    try {
      const row = await benchCase(b, o, device, c, i);
      rows.push(row);
      console.log(JSON.stringify(row));
    } catch (e) {
      console.log(JSON.stringify({ op: c.op, shape: c.shape, error: e instanceof Error ? e.message : String(e) }));
    }
  }
  const ratios = rows.map((r) => r.ratio as number);
  const geo = ratios.length ? Math.exp(ratios.reduce((s, x) => s + Math.log(x), 0) / ratios.length) : null;
  console.log(JSON.stringify({ summary: true, rows: rows.length, failed: cases.length - rows.length, geomeanRatio: geo === null ? null : +geo.toFixed(3), worstRatio: ratios.length ? Math.max(...ratios) : null, aboveOne: rows.filter((r) => (r.ratio as number) > 1).map((r) => `${r.op} ${r.shape}`) }));
  releaseOrt();
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
    process.exit(1);
  },
);
