// GEMM tile sweep on Dawn: each problem size timed with the 64 and 32 tiles, unsplit and split-K, to set gemmTiling's thresholds;
// with --f16 (an adapter with shader-f16), a frozen f16 weight read natively against unpacked from u32 pairs; with --conv, 3x3 conv forwards.
import { nodeGpu } from '../engine/node.js';
import type { GpuBackend } from '../engine/backend.js';
import { convGemmKernel, convGemmShape, splitK, splitSumKernel, type ConvTile } from '../engine/kernels/conv2d.js';
import { convGeometry } from '../engine/ops/conv.js';
import { gemmKernel, gemmTiling, type GemmParams, type GemmTile } from '../engine/kernels/matmul.js';
import { empty, type Tensor } from '../engine/tensor.js';

/** [label, M, N, K]: linears and LoRA projections of the demo and of SD 1.5 (weight gradients contract over tokens). */
const SHAPES: [string, number, number, number][] = [
  ['64^3', 64, 64, 64],
  ['lora down 256x16 <- 320', 256, 16, 320],
  ['lora up 1024x320 <- 16', 1024, 320, 16],
  ['lora dW 16x320 over 1024', 16, 320, 1024],
  ['lora dW 16x640 over 4096', 16, 640, 4096],
  ['linear 256x320 <- 320', 256, 320, 320],
  ['linear 77x320 <- 768 (context)', 77, 320, 768],
  ['linear 64x1280 <- 1280', 64, 1280, 1280],
  ['linear 1024x640 <- 640', 1024, 640, 640],
  ['linear 4096x320 <- 320', 4096, 320, 320],
];

/** [label, x shape, output channels]: 3x3 convs, pad 1, of the tiny demo U-Net and of SD 1.5's deepest level. */
const CONVS: [string, number[], number][] = [
  ['conv 3x3 32ch 32x32', [1, 32, 32, 32], 32],
  ['conv 3x3 64ch 16x16', [1, 64, 16, 16], 64],
  ['conv 3x3 64ch 8x8', [1, 64, 8, 8], 64],
  ['conv 3x3 1280ch 8x8', [1, 1280, 8, 8], 1280],
];

const REPS = Number(process.argv.find((a) => a.startsWith('--reps='))?.slice(7) ?? 3);

function noise(b: GpuBackend, shape: number[], dtype: 'f32' | 'f16' = 'f32'): Tensor {
  const t = empty(b, shape, dtype);
  t.write(Float32Array.from({ length: t.size }, (_, i) => Math.sin(i * 12.9898) * 0.5));
  return t;
}

/** Median wall time of one GEMM (plus its split-sum) with this tile and split, after a warm-up that compiles. */
/** Median wall time of `REPS` runs of `once`, after one untimed run that compiles its pipelines. */
async function medianMs(once: () => Promise<void>): Promise<number> {
  await once();
  const ms: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const t0 = performance.now();
    await once();
    ms.push(performance.now() - t0);
  }
  return ms.sort((a, c) => a - c)[Math.floor(ms.length / 2)]!;
}

async function timeGemm(b: GpuBackend, M: number, N: number, K: number, tile: GemmTile, splits: number, f16?: boolean): Promise<number> {
  const none = { shape: [], a: [], b: [] };
  const wd = f16 === undefined ? 'f32' : 'f16';
  const p: GemmParams = { M, N, K, transA: false, transB: true, dtypeA: 'f32', dtypeB: wd, bias: null, batch: none, sum: none, tile, splits, f16 };
  const [x, w, out] = [noise(b, [M, K]), noise(b, [N, K], wd), empty(b, [M, N])];
  const ws = splits > 1 ? empty(b, [splits, M * N]) : out;
  const once = async () => {
    b.run(gemmKernel(p), [x, w, ws].map((t) => t.binding()));
    if (splits > 1) b.run(splitSumKernel({ size: M * N, splits, bias: null, plane: 1, channels: N }), [ws, out].map((t) => t.binding()));
    await b.sync();
  };
  const ms = await medianMs(once);
  for (const t of new Set([x, w, out, ws])) t.dispose();
  return ms;
}

/** Median wall time of a conv forward (and its split-sum) with this tile, split as the op would split it. */
async function timeConv(b: GpuBackend, xs: number[], O: number, tile: ConvTile): Promise<{ ms: number; splits: number }> {
  const g = convGeometry(xs, [O, xs[1]!, 3, 3], { padding: 1 });
  const pass = { kind: 'forward' } as const;
  const { M, N, K } = convGemmShape(g, pass);
  const split = splitK(M, N, K, tile);
  const [x, w, out] = [noise(b, xs), noise(b, [O, xs[1]!, 3, 3]), empty(b, [M * N])];
  const ws = split.splits > 1 ? empty(b, [split.splits, M * N]) : out;
  const once = async () => {
    b.run(convGemmKernel({ g, pass, dt: { x: 'f32', w: 'f32', g: 'f32', bias: null }, split, tile }), [x, w, ws].map((t) => t.binding()));
    if (split.splits > 1) b.run(splitSumKernel({ size: M * N, splits: split.splits, bias: null, plane: 1, channels: 1 }), [ws, out].map((t) => t.binding()));
    await b.sync();
  };
  const ms = await medianMs(once);
  for (const t of new Set([x, w, out, ws])) t.dispose();
  return { ms, splits: split.splits };
}

/**
 * f32 tiles against f16 tiles in workgroup memory (f32 math; f16 products), f16 weight read natively as
 * training runs it; the three alternated A B C per repetition, after one untimed run each. Also the
 * largest difference of each f16 variant from the f32 tiles' output, relative to the output's largest entry.
 */
async function benchF16Tiles(b: GpuBackend, M: number, N: number, K: number, label: string): Promise<void> {
  const { tile } = gemmTiling(M, N, K);
  const none = { shape: [], a: [], b: [] };
  const base: GemmParams = { M, N, K, transA: false, transB: true, dtypeA: 'f32', dtypeB: 'f16', bias: null, batch: none, sum: none, tile, splits: 1, f16: true };
  const variants: GemmParams[] = [base, { ...base, f16Tiles: 'store' }, { ...base, f16Tiles: 'mul' }];
  const [x, w] = [noise(b, [M, K]), noise(b, [N, K], 'f16')];
  const outs = variants.map(() => empty(b, [M, N]));
  const once = async (i: number) => {
    b.run(gemmKernel(variants[i]!), [x, w, outs[i]!].map((t) => t.binding()));
    await b.sync();
  };
  for (let i = 0; i < variants.length; i++) await once(i);
  const ms: number[][] = variants.map(() => []);
  for (let r = 0; r < REPS; r++) {
    for (let i = 0; i < variants.length; i++) {
      const t0 = performance.now();
      await once(i);
      ms[i]!.push(performance.now() - t0);
    }
  }
  const med = (a: number[]) => a.sort((p, q) => p - q)[Math.floor(a.length / 2)]!;
  const vals = await Promise.all(outs.map((o) => o.read()));
  const scale = vals[0]!.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
  const err = (v: Float32Array) => v.reduce((a, y, i) => Math.max(a, Math.abs(y - vals[0]![i]!)), 0) / scale;
  const [f32, store, mul] = ms.map(med) as [number, number, number];
  console.log(JSON.stringify({ name: label, M, N, K, tile, f32_tiles_ms: +f32.toFixed(2), f16_store_ms: +store.toFixed(2), f16_mul_ms: +mul.toFixed(2), store_ratio: +(store / f32).toFixed(3), mul_ratio: +(mul / f32).toFixed(3), store_err: +err(vals[1]!).toExponential(2), mul_err: +err(vals[2]!).toExponential(2) }));
  for (const t of [x, w, ...outs]) t.dispose();
}

async function main() {
  const { backend: b, adapter } = await nodeGpu();
  console.log(`adapter: ${adapter.description || adapter.vendor}; median of ${REPS}`);
  if (process.argv.includes('--f16-tiles')) {
    if (!b.nativeF16) throw new Error('--f16-tiles needs an adapter with shader-f16 (lavapipe: ../shared/tools/lavapipe.sh)');
    for (const [label, M, N, K] of SHAPES.filter(([, M, N]) => M * N >= 65536)) await benchF16Tiles(b, M, N, K, label);
    process.exit(0);
  }
  if (process.argv.includes('--f16')) {
    if (!b.device.features.has('shader-f16')) throw new Error('--f16 needs an adapter with shader-f16 (lavapipe: ../shared/tools/lavapipe.sh)');
    for (const [label, M, N, K] of SHAPES.filter(([, M, N]) => M * N >= 16384)) {
      const { tile } = gemmTiling(M, N, K);
      const unpacked = await timeGemm(b, M, N, K, tile, 1, false);
      const native = await timeGemm(b, M, N, K, tile, 1, true);
      console.log(JSON.stringify({ name: `${label}, f16 weight`, M, N, K, tile, unpacked_ms: +unpacked.toFixed(2), native_ms: +native.toFixed(2) }));
    }
    process.exit(0);
  }
  if (process.argv.includes('--conv')) {
    for (const [label, xs, O] of CONVS) {
      const [t64, t32] = [await timeConv(b, xs, O, 64), await timeConv(b, xs, O, 32)];
      console.log(JSON.stringify({ name: label, t64_ms: +t64.ms.toFixed(2), t64_splits: t64.splits, t32_ms: +t32.ms.toFixed(2), t32_splits: t32.splits }));
    }
    process.exit(0);
  }
  for (const [label, M, N, K] of SHAPES) {
    const row: Record<string, number | string> = { name: label, M, N, K };
    for (const tile of [64, 32] as const) {
      const groups = Math.ceil(M / tile) * Math.ceil(N / tile);
      row[`t${tile}_ms`] = +(await timeGemm(b, M, N, K, tile, 1)).toFixed(2);
      const splits = Math.min(16, Math.max(2, Math.floor(K / 256)));
      if (groups < 64 && K >= 512) row[`t${tile}_split${splits}_ms`] = +(await timeGemm(b, M, N, K, tile, splits)).toFixed(2);
    }
    const pick = gemmTiling(M, N, K);
    row.chosen = `t${pick.tile}${pick.splits > 1 ? ` split${pick.splits}` : ''}`;
    row.useful_t64 = +((M * N) / (Math.ceil(M / 64) * 64 * Math.ceil(N / 64) * 64)).toFixed(2);
    row.useful_t32 = +((M * N) / (Math.ceil(M / 32) * 32 * Math.ceil(N / 32) * 32)).toFixed(2);
    console.log(JSON.stringify(row));
  }
  process.exit(0);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
