// Writes an SD 1.5-shaped single-file checkpoint (LDM names, f16, ~2 GB) with seeded random weights, streamed tensor by tensor.
// The tensors and their values come from model/sd15-init.ts.
import { closeSync, existsSync, mkdirSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { formatBytes } from '../engine/bytes.js';
import { numel, sd15Plan, tensorBits, type PlannedTensor } from '../model/sd15-init.js';

/** Where `npm run sd15-model` writes and `npm run bench -- --sd15` reads (outside the repository: 2 GB is never committed). */
export const SD15_MODEL_PATH = process.env.LORASMITH_SD15 ?? join(homedir(), '.cache/lorasmith/sd15-random-f16.safetensors');

/** The safetensors header (length prefix included) for tensors laid out in the given order, all F16. */
function header(plan: readonly PlannedTensor[], metadata: Record<string, string>): Uint8Array {
  const h: Record<string, unknown> = { __metadata__: metadata };
  let end = 0;
  for (const t of plan) {
    const len = 2 * numel(t.shape);
    h[t.name] = { dtype: 'F16', shape: t.shape, data_offsets: [end, end + len] };
    end += len;
  }
  const json = new TextEncoder().encode(JSON.stringify(h));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  out.set(json, 8);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  return out;
}

/**
 * Write the checkpoint to `path` (through a temporary file renamed at the end, so a cut run never
 * leaves a truncated file behind). One tensor is in memory at a time (the largest, CLIP's token
 * embedding, is 76 MB in f16). Returns the bytes written.
 */
export function writeSd15Model(path: string, seed = 15, onTensor?: (done: number, total: number, bytes: number) => void): number {
  const plan = sd15Plan();
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.partial`;
  const fd = openSync(tmp, 'w');
  let bytes = 0;
  try {
    const put = (a: Uint8Array) => {
      for (let off = 0; off < a.length; ) off += writeSync(fd, a, off, a.length - off);
      bytes += a.length;
    };
    put(header(plan, { format: 'pt', note: `LoRASmith: SD 1.5-shaped checkpoint with seeded random weights (seed ${seed}), for benchmarks; not a usable model` }));
    plan.forEach((t, i) => {
      const bits = tensorBits(t, seed);
      put(new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength));
      onTensor?.(i + 1, plan.length, bytes);
    });
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return bytes;
}

if (process.argv[1] && resolve(process.argv[1]).endsWith('sd15-model.ts')) {
  const path = resolve(process.argv.find((a, i) => i > 1 && !a.startsWith('--')) ?? SD15_MODEL_PATH);
  if (existsSync(path) && !process.argv.includes('--force')) {
    console.log(`${path} exists (${formatBytes(statSync(path).size)}); --force writes it again`);
  } else {
    const t0 = performance.now();
    let last = 0;
    const bytes = writeSd15Model(path, 15, (done, total, b) => {
      if (performance.now() - last > 1000 || done === total) {
        last = performance.now();
        process.stdout.write(`\rtensor ${done}/${total}, ${formatBytes(b)}`);
      }
    });
    console.log(`\nwrote ${path}: ${formatBytes(bytes)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
}
