// The README's "Library" example runs as written: the tiny pipeline, a LoRA, five training steps through step.ts, and a LoRA file that reads back.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeGpu } from '../engine/node.js';
import { LoraNetwork } from '../model/lora.js';
import { folderRepo } from '../model/node-repo.js';
import { loadDiffusers } from '../model/pipeline.js';
import { bytesSource, openSafetensors } from '../model/safetensors.js';
import { DEFAULT_CONFIG } from './config.js';
import { encodeLatents } from './data.js';
import { decodeImageNode } from './decode-node.js';
import { loraFile, loraSpecs } from './network.js';
import { createOptimizer } from './optimizer.js';
import { Rng } from './rng.js';
import { stepSettings, trainStep } from './step.js';
import { ROOT } from './testing.js';

/** The example's body, as the README shows it (run from the repository root). */
async function example(): Promise<{ losses: number[]; file: Uint8Array }> {
  const cwd = process.cwd();
  process.chdir(ROOT);
  try {
    // library-example:start
    const { backend } = await nodeGpu();
    const pipeline = await loadDiffusers(backend, folderRepo('public/tiny'));
    const config = { ...DEFAULT_CONFIG, resolution: 64, enableBuckets: false, flipAug: false, trainTextEncoder: false, networkDim: 4, networkAlpha: 4 };
    const lora = new LoraNetwork(backend, loraSpecs(pipeline, config), config.seed);
    const optimizer = createOptimizer(config);
    const settings = stepSettings(config);

    // One image, encoded once by the VAE: its latent is [4, 8, 8] at 64x64.
    const caption = readFileSync('public/samples/astronaut.txt', 'utf8').trim();
    const image = decodeImageNode('astronaut.png', readFileSync('public/samples/astronaut.png'));
    const rng = new Rng(config.seed);
    const [latent] = (await encodeLatents(backend, pipeline.vae, [{ name: 'astronaut.png', image, caption }], config, rng))!;

    const losses: number[] = [];
    for (let step = 1; step <= 5; step++) {
      // Every random choice is the caller's: here fresh noise and a timestep per step.
      const batch = { latents: latent!.data, noise: rng.normals(latent!.data.length), timesteps: [rng.int(0, 1000)], captions: [caption], height: 8, width: 8 };
      const { loss } = await trainStep({ ...pipeline, lora }, settings, optimizer, [batch], { step, lr: { unet: 1e-3, te: 0 } }).read();
      losses.push(loss);
    }
    const file = await loraFile(lora, { ss_output_name: 'astronaut' }); // kohya format, fp16
    // library-example:end
    optimizer.dispose();
    lora.dispose();
    pipeline.dispose();
    return { losses, file };
  } finally {
    process.chdir(cwd);
  }
}

describe('the README library example', () => {
  it('is the code the README shows', () => {
    const src = readFileSync(new URL(import.meta.url).pathname, 'utf8');
    const body = /\/\/ library-example:start\n([\s\S]*?)\n\s*\/\/ library-example:end/.exec(src)![1]!;
    const dedent = (s: string) => s.replace(/^ {4}/gm, '');
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme).toContain(dedent(body));
  });

  it('trains five steps on the tiny pipeline and writes a LoRA file that reads back', async () => {
    const { losses, file } = await example();
    console.log(`library example: losses ${losses.map((l) => l.toFixed(4)).join(', ')}; file ${file.length} bytes`);
    expect(losses).toHaveLength(5);
    for (const l of losses) expect(Number.isFinite(l) && l > 0).toBe(true);
    const f = await openSafetensors(bytesSource(file));
    expect(f.metadata.ss_output_name).toBe('astronaut');
    const ups = [...f.tensors.keys()].filter((k) => k.endsWith('lora_up.weight'));
    expect(ups.length).toBe(84); // 7 transformers x 12 modules in the tiny U-Net
    // The up projections start at zero: five updates moved them.
    const up = await f.readTensor(ups[0]!);
    expect(up.some((v) => v !== 0)).toBe(true);
  }, 20 * 60_000);
});
