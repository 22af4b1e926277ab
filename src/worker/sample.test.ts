// The worker's Try-it renders on Dawn: request checks at the boundary, one render at a time, cancel between denoising steps, its images in their own transferable buffers, the API's refusals.
import { describe, expect, it } from 'vitest';
import { nodeGpu } from '../engine/node.js';
import { testBackend } from '../engine/testing/gpu.js';
import { decodeImageNode } from '../training/decode-node.js';
import { tinyPipeline } from '../training/testing.js';
import type { SampleRequest } from '../protocol/index.js';
import { createTrainerApi } from './api.js';
import { SampleRenders } from './sample.js';

const REQUEST: SampleRequest = { prompt: 'a cat', negativePrompt: '', seed: 1, steps: 1, guidance: 1, width: 64, height: 64, sampler: 'ddim', lora: { source: 'none' }, strengths: [0, 0] };

describe('Try-it renders in the worker', () => {
  it('checks the request, renders one at a time, cancels between steps, and returns each image in its own buffer', async () => {
    const p = await tinyPipeline(await testBackend());
    const renders = new SampleRenders();
    renders.cancel(); // nothing runs: nothing to cancel, and the next render is not cancelled by it (it renders its step below)
    await expect(renders.render(p, null, { ...REQUEST, width: 100, steps: 0 }, () => {})).rejects.toThrow(/^Fix the render settings first: Steps must be .*; Width must be a multiple of 64 \(got 100\)$/);
    const steps: number[] = [];
    const first = renders.render(p, null, REQUEST, (e) => steps.push(e.step));
    expect(renders.busy).toBe(true);
    await expect(renders.render(p, null, REQUEST, () => {})).rejects.toThrow(/A render is already running: wait for it to finish/);
    const order: string[] = [];
    void first.then(() => order.push('render'));
    const waited = renders.idle().then(() => order.push('idle')); // what unpause waits for
    const r = await first;
    await waited;
    expect([renders.busy, order]).toEqual([false, ['render', 'idle']]);
    expect([r.images.length, r.notes, steps]).toEqual([2, [], [1]]);
    expect(r.images[0]!.data.buffer).not.toBe(r.images[1]!.data.buffer);
    await expect(renders.render(p, null, { ...REQUEST, lora: { source: 'trained' } }, () => {})).rejects.toThrow(/No trained LoRA here yet/);
    expect(renders.busy).toBe(false); // a failed render frees the worker for the next
    // Cancel between denoising steps: asked during step 1's progress, the render stops after it and frees the worker.
    const seen: number[] = [];
    const cancelled = renders.render(p, null, { ...REQUEST, steps: 3, strengths: [0] }, (e) => {
      seen.push(e.step);
      if (e.step === 1) renders.cancel();
    });
    await expect(cancelled).rejects.toThrow(/^Cancelled at step 1 of 3$/);
    expect([seen, renders.busy]).toEqual([[1], false]);
    p.dispose();
  }, 10 * 60_000);

  it('the API refuses a render before a model is loaded', async () => {
    const api = createTrainerApi({ acquireGpu: nodeGpu, decodeImage: async (name, bytes) => decodeImageNode(name, new Uint8Array(bytes)) });
    await expect(api.sample(REQUEST, () => {})).rejects.toThrow(/Load a model first/);
  });
});
