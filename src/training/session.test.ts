// training/session: the worker's and the CLI's run sequence on the tiny pipeline: settings checked, a file continued at its rank, a Stop while encoding.
import { describe, expect, it } from 'vitest';
import { testBackend } from '../engine/testing/gpu.js';
import { checkSettings, SettingsError, TrainingSession } from './session.js';
import { sampleItems, tinyPipeline } from './testing.js';

/** Tiny, quick settings: 64 pixels, one image per step, no text encoder, no sample previews. */
const settings = (extra: object = {}) =>
  checkSettings({ resolution: 64, minBucket: 64, maxBucket: 128, enableBuckets: false, trainTextEncoder: false, sampleSteps: 0, ...extra });

describe('TrainingSession', () => {
  it('refuses invalid settings field by field', () => {
    let err: unknown;
    try {
      checkSettings({ batchSize: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SettingsError);
    expect(Object.keys((err as SettingsError).errors)).toEqual(['batchSize']);
  });

  it('continues from a saved file at the file’s own rank, saying so', async () => {
    // A full run through the session (latents, compile, steps, save) is src/worker/api.test.ts's: the worker runs this class.
    const pipeline = await tinyPipeline(await testBackend());
    const items = sampleItems(1);
    const first = await TrainingSession.open({ pipeline, config: settings({ networkDim: 2, networkAlpha: 1 }), items });
    expect(first.continued).toBeNull();
    expect(first.plan.steps).toBeGreaterThan(0);
    const file = await first.trainer.exportLora();
    first.dispose();
    const again = await TrainingSession.open({ pipeline, config: settings({ networkDim: 4, networkAlpha: 4 }), items, continueFrom: { file, name: 'first.safetensors' } });
    expect(again.continued?.modules).toBeGreaterThan(0);
    expect(again.continued?.notes.join(' ')).toMatch(/^first\.safetensors: .*rank 2, alpha 1 .*Training continues with the file's rank and alpha\./);
    again.dispose();
  }, 10 * 60_000);

  it('a Stop while the latents are encoded ends the run with nothing trained or saved', async () => {
    const pipeline = await tinyPipeline(await testBackend());
    const events: string[] = [];
    const s = await TrainingSession.open({
      pipeline, config: settings({ baseSteps: 5 }), items: sampleItems(3),
      events: {
        onProgress: (stage, c) => {
          if (stage === 'caching' && c?.done === 1) s.control.stop();
          events.push(stage);
        },
        onMetrics: () => events.push('metrics'),
        onCheckpoint: () => events.push('checkpoint'),
      },
    });
    expect(await s.run()).toEqual({ step: 0, stopped: true, savedStep: 0, trained: false });
    expect(events).toEqual(['caching', 'caching']);
    s.dispose();
  }, 10 * 60_000);
});
