// training/session: the worker's and the CLI's run sequence (settings, continuing a file, latents, compile, train) on the tiny pipeline.
import { describe, expect, it } from 'vitest';
import { testBackend } from '../engine/testing/gpu.js';
import { checkSettings, SettingsError, TrainingSession, type SessionStage } from './session.js';
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

  it('encodes, compiles and trains to the end, then continues from the saved file at its own rank', async () => {
    const pipeline = await tinyPipeline(await testBackend());
    const items = sampleItems(2);
    // Two images, one step: both are encoded, one is trained on.
    const stages: string[] = [];
    const saved: { file: Uint8Array; step: number }[] = [];
    const onProgress = (stage: SessionStage, c?: { done: number; total: number }) => {
      const s = c ? `${stage} ${c.done}/${c.total}` : stage;
      if (stages.at(-1) !== s && !(stage === 'compiling' && c && c.done > 0)) stages.push(s);
    };
    const first = await TrainingSession.open({ pipeline, config: settings({ baseSteps: 1, networkDim: 2, networkAlpha: 1 }), items, events: { onProgress, onCheckpoint: (file, step) => saved.push({ file: file.slice(), step }) } });
    expect(first.continued).toBeNull();
    expect(first.plan.steps).toBe(1);
    expect(await first.run()).toEqual({ step: 1, stopped: false, savedStep: 1, trained: true });
    first.dispose();
    // The stages in order: every image counted from 0, then compiling before its count, then the count from 0.
    expect(stages.slice(0, 4)).toEqual(['caching 0/2', 'caching 1/2', 'caching 2/2', 'compiling']);
    expect(stages[4]).toMatch(/^compiling 0\/\d+$/);
    expect(saved.map((s) => s.step)).toEqual([1]);

    const again = await TrainingSession.open({ pipeline, config: settings({ baseSteps: 1, networkDim: 4, networkAlpha: 4 }), items, continueFrom: { file: saved[0]!.file, name: 'first.safetensors' } });
    expect(again.continued?.modules).toBeGreaterThan(0);
    expect(again.continued?.notes.join(' ')).toMatch(/rank/i);
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
