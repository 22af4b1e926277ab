// Decodes one image file in a fresh Node process and prints its time and peak memory growth as JSON (image-header.test's bounds).
// A process of its own because the peak RSS a process reports is its lifetime's: in a test worker it holds what earlier files left.
import { readFileSync } from 'node:fs';
import { decodeImageNode } from '../decode-node.js';

const [name, path] = process.argv.slice(2) as [string, string];
const bytes = new Uint8Array(readFileSync(path));
globalThis.gc?.();
const rss = process.memoryUsage().rss;
const t = performance.now();
let result: { width: number; height: number } | { error: string; message: string };
try {
  const img = decodeImageNode(name, bytes);
  result = { width: img.width, height: img.height };
} catch (e) {
  result = { error: (e as Error).name, message: (e as Error).message };
}
const seconds = (performance.now() - t) / 1000;
console.log(JSON.stringify({ result, seconds, peakGrowthMB: (process.resourceUsage().maxRSS * 1024 - rss) / 2 ** 20 }));
