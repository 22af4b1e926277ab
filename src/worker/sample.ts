// The worker's Try-it renders: one at a time, validated at the boundary, cancellable between denoising steps, the images transferred back to the page.
import * as Comlink from 'comlink';
import type { Pipeline } from '../model/pipeline.js';
import { openSampleLora, renderStrengths } from '../training/sample-render.js';
import { SampleRequestError, checkSampleRequest } from '../training/sample-settings.js';
import type { Trainer } from '../training/trainer.js';
import type { SampleProgress, SampleRequest, SampleResult } from '../protocol/index.js';

/** Renders for the page; `busy` while one runs (the worker refuses model loads and starts meanwhile, and unpauses a run after it). */
export class SampleRenders {
  busy = false;
  private current: Promise<unknown> | null = null;
  /** The running render's: aborted by `cancel`, looked at after each denoising step. */
  private abort: AbortController | null = null;

  /** Resolves when no render runs (a failed one included). */
  async idle(): Promise<void> {
    await this.current?.catch(() => {});
  }

  /** Stop the running render after its current denoising step (it rejects with "Cancelled at step k of n"); nothing when none runs. */
  cancel(): void {
    this.abort?.abort();
  }

  /** Render `request` on `pipeline` with the run's LoRA (`trainer`, if any) or the request's file. */
  async render(pipeline: Pipeline, trainer: Trainer | null, request: SampleRequest, onProgress: (p: SampleProgress) => void): Promise<SampleResult> {
    if (this.busy) throw new Error('A render is already running: wait for it to finish before starting another');
    const { lora, ...settings } = request;
    try {
      checkSampleRequest(settings);
    } catch (e) {
      if (e instanceof SampleRequestError) throw new Error(`Fix the render settings first: ${Object.values(e.errors).join('; ')}`);
      throw e;
    }
    this.busy = true;
    this.abort = new AbortController();
    const run = this.run(pipeline, trainer, lora, settings, onProgress, this.abort.signal);
    this.current = run;
    return run;
  }

  private async run(pipeline: Pipeline, trainer: Trainer | null, lora: SampleRequest['lora'], settings: Omit<SampleRequest, 'lora'>, onProgress: (p: SampleProgress) => void, signal: AbortSignal): Promise<SampleResult> {
    try {
      const opened = await openSampleLora(pipeline, lora, trainer);
      try {
        const images = await renderStrengths(pipeline, settings, opened.adapters, opened.settings, onProgress, signal);
        return Comlink.transfer({ images, notes: opened.notes }, images.map((i) => i.data.buffer));
      } finally {
        opened.dispose();
      }
    } finally {
      this.busy = false;
      this.abort = null;
    }
  }
}
