// TrainConfig: the recipe's defaults and their validation, per-field errors with ranges, and the warmup rules.
import { describe, expect, it } from 'vitest';
import { bucketSideLimits } from './buckets.js';
import { DEFAULT_CONFIG, OPTIMIZER_PRESETS, validateConfig, type TrainConfig } from './config.js';

const errors = (input: unknown): Record<string, string> => {
  const r = validateConfig(input);
  return r.ok ? {} : r.errors;
};

describe('defaults', () => {
  it('follow the recipe table', () => {
    expect(DEFAULT_CONFIG).toMatchObject({
      baseSteps: 2000, divideStepsByBatch: true, batchSize: 1, gradAccumulation: 1, unetLr: 1e-4, textEncoderLr: 5e-5,
      lrScaling: 'linear', scheduler: 'cosine', warmup: 0.1, warmupUnit: 'fraction', optimizer: 'adamw', beta1: 0.9, beta2: 0.99,
      weightDecay: 0.01, networkDim: 16, networkAlpha: 16, networkDropout: 0.1, convDim: 0, trainTextEncoder: true, resolution: 512,
      enableBuckets: true, bucketStep: 64, minBucket: 320, maxBucket: 768, maxAspect: 2, flipAug: true, shuffleCaptions: true,
      keepTokens: 1, captionDropout: 0, tagDropout: 0, triggerWord: '', repeats: 1, noiseOffset: 0.01, minSnrGamma: 5,
      prediction: 'epsilon', zeroTerminalSnr: false, clipSkip: 1, seed: 0, maxGradNorm: 1,
      cacheTextEncoderOutputs: false, gradientCheckpointing: true, saveEvery: 0, sampleEvery: 0, savePrecision: 'fp16',
    } satisfies Partial<TrainConfig>);
    expect(bucketSideLimits(512, 2, 64)).toEqual({ min: DEFAULT_CONFIG.minBucket, max: DEFAULT_CONFIG.maxBucket });
    expect(Object.isFrozen(DEFAULT_CONFIG)).toBe(true);
  });
  it('validate, whole or as an empty or partial object', () => {
    expect(validateConfig(DEFAULT_CONFIG)).toEqual({ ok: true, config: DEFAULT_CONFIG });
    expect(validateConfig({})).toEqual({ ok: true, config: DEFAULT_CONFIG });
    expect(validateConfig(undefined)).toEqual({ ok: true, config: DEFAULT_CONFIG });
    expect(validateConfig({ batchSize: 2 })).toMatchObject({ ok: true, config: { batchSize: 2, unetLr: 1e-4 } });
  });
  it('unknown keys are dropped, not kept', () => {
    const r = validateConfig({ batchSize: 2, colour: 'red' });
    expect(r.ok && 'colour' in r.config).toBe(false);
  });
  it('Prodigy presets give LR 1 and no clipping, as the guide sets them', () => {
    expect(OPTIMIZER_PRESETS.prodigy).toEqual({ unetLr: 1, textEncoderLr: 1, maxGradNorm: 0 });
    for (const o of ['adamw', 'lion', 'prodigy', 'sgd'] as const) expect(validateConfig({ optimizer: o, ...OPTIMIZER_PRESETS[o] }).ok).toBe(true);
  });
});

describe('per-field errors name the field and the allowed range', () => {
  it('NaN, negative, out of range, not whole, wrong type', () => {
    const e = errors({ unetLr: NaN, batchSize: -2, baseSteps: 2.5, networkDropout: 2, seed: 'abc', lrPower: Infinity, flipAug: 'yes', scheduler: 'step', runName: '' });
    expect(e).toEqual({
      unetLr: 'U-Net learning rate is required: a number between 0 and 10',
      batchSize: 'Batch size must be between 1 and 64 (got -2)',
      baseSteps: 'Base steps must be a whole number between 1 and 1000000 (got 2.5)',
      networkDropout: 'Network dropout must be between 0 and 0.9 (got 2)',
      seed: 'Seed must be a whole number between 0 and 4294967295 (got "abc")',
      lrPower: 'LR power must be a number between 0.01 and 10 (got Infinity)',
      flipAug: 'Flip augmentation must be on or off (true or false; got "yes")',
      scheduler: 'LR schedule must be one of constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial (got "step")',
      runName: 'Give the run a name',
    });
  });
  it('multiples of 64 where the U-Net needs them', () => {
    expect(errors({ resolution: 500 }).resolution).toBe('Resolution must be a multiple of 64 (got 500)');
    expect(errors({ bucketStep: 32 }).bucketStep).toMatch(/between 64 and 512/);
    expect(errors({ minBucket: 300 }).minBucket).toMatch(/multiple of the bucket step 64 \(got 300\)/);
    expect(errors({ minBucket: 768, maxBucket: 320 }).minBucket).toMatch(/above the maximum/);
  });
  it('the run name allows safe file-name characters only', () => {
    expect(errors({ runName: 'my/../lora' }).runName).toMatch(/letters, digits/);
    expect(errors({ runName: 'x'.repeat(101) }).runName).toMatch(/at most 100/);
    expect(validateConfig({ runName: 'cat v2.1_final-A' }).ok).toBe(true);
  });
  it('settings that are not an object', () => {
    for (const bad of [null, 3, 'batch', [1]]) expect(Object.keys(errors(bad))).toEqual(['config']);
  });
});

describe('warmup', () => {
  it('a fraction must be below 1', () => {
    expect(errors({ warmup: 1 }).warmup).toMatch(/below 1 \(got 1\); set the unit to "steps"/);
    expect(errors({ warmup: 1.5, baseSteps: 2.5 }).warmup).toMatch(/below 1/); // judged even when the steps are wrong
  });
  it('steps must be whole and not longer than the run after the arithmetic', () => {
    expect(errors({ warmup: 10.5, warmupUnit: 'steps' }).warmup).toMatch(/whole number/);
    expect(validateConfig({ warmup: 250, warmupUnit: 'steps', batchSize: 8 }).ok).toBe(true); // 250 steps, 250 warmup
    expect(errors({ warmup: 251, warmupUnit: 'steps', batchSize: 8 }).warmup).toBe('Warmup (251 steps) is longer than the run (250 steps)');
    expect(errors({ warmup: 300, warmupUnit: 'steps', batchSize: 4, gradAccumulation: 2 }).warmup).toMatch(/longer than the run \(250 steps\)/);
  });
  it('the constant schedule takes no warmup', () => {
    expect(errors({ scheduler: 'constant' }).warmup).toMatch(/constant_with_warmup/);
    expect(validateConfig({ scheduler: 'constant', warmup: 0 }).ok).toBe(true);
  });
});

describe('checks between fields', () => {
  it('caching text-encoder outputs needs a frozen text encoder and fixed captions', () => {
    expect(errors({ cacheTextEncoderOutputs: true }).cacheTextEncoderOutputs).toMatch(/not trained/);
    expect(errors({ cacheTextEncoderOutputs: true, trainTextEncoder: false }).cacheTextEncoderOutputs).toMatch(/fixed captions/);
    expect(validateConfig({ cacheTextEncoderOutputs: true, trainTextEncoder: false, shuffleCaptions: false }).ok).toBe(true);
  });
  it('zero terminal SNR needs v-prediction', () => {
    expect(errors({ zeroTerminalSnr: true }).zeroTerminalSnr).toMatch(/v-prediction/);
    expect(validateConfig({ zeroTerminalSnr: true, prediction: 'v_prediction' }).ok).toBe(true);
  });
  it('Prodigy wants an LR multiplier near 1; polynomial an LR above its end', () => {
    const e = errors({ optimizer: 'prodigy' });
    expect(e.unetLr).toMatch(/Prodigy.*normally 1 \(got 0.0001\)/);
    expect(e.textEncoderLr).toMatch(/Prodigy/);
    expect(errors({ optimizer: 'prodigy', unetLr: 1, textEncoderLr: 0, trainTextEncoder: false })).toEqual({});
    expect(errors({ scheduler: 'polynomial', unetLr: 1e-8 }).unetLr).toMatch(/decays to 1e-7/);
    expect(validateConfig({ scheduler: 'polynomial', textEncoderLr: 0 }).ok).toBe(true);
  });
  it('checks the sample settings', () => {
    expect(errors({ sampleSteps: 151 }).sampleSteps).toMatch(/Sample steps must be/);
    expect(errors({ sampleGuidance: 0.5 }).sampleGuidance).toMatch(/Sample guidance must be/);
    expect(errors({ sampleSteps: 0, samplePrompt: 'a photo of sks' })).toEqual({});
  });
  it('a field with its own error is not judged again', () => {
    expect(errors({ warmup: 'lots' }).warmup).toMatch(/Warmup must be a number/);
  });
});

describe('bucket sides', () => {
  it('are derived from resolution and max aspect when left out', () => {
    expect(validateConfig({ resolution: 768 })).toMatchObject({ ok: true, config: { minBucket: 512, maxBucket: 1088 } });
    expect(validateConfig({ resolution: 64 })).toMatchObject({ ok: true, config: { minBucket: 64, maxBucket: 128 } });
    expect(validateConfig({ maxAspect: 3 })).toMatchObject({ ok: true, config: { minBucket: 256, maxBucket: 896 } });
  });
  it('are kept when given', () => {
    expect(validateConfig({ resolution: 768, minBucket: 256, maxBucket: 1024 })).toMatchObject({ ok: true, config: { minBucket: 256, maxBucket: 1024 } });
  });
});

describe('fields the page leaves empty or sets together', () => {
  it('an emptied number field (NaN or nothing) says "required", not "got NaN"', () => {
    const e = errors({ batchSize: NaN, networkAlpha: undefined, unetLr: '' });
    expect(e.batchSize).toBe('Batch size is required: a whole number between 1 and 64');
    expect(e.networkAlpha).toBe('Network alpha is required: a number between 0.001 and 1024');
    expect(e.unetLr).toBe('U-Net learning rate is required: a number between 0 and 10');
  });
  it('conv alpha defaults to the conv dim (kohya) and may not be 0 with LoCon on', () => {
    expect(validateConfig({ convDim: 8 })).toMatchObject({ ok: true, config: { convDim: 8, convAlpha: 8 } });
    expect(validateConfig({ convDim: 8, convAlpha: 2 })).toMatchObject({ ok: true, config: { convAlpha: 2 } });
    expect(errors({ convDim: 8, convAlpha: 0 }).convAlpha).toMatch(/scales the LoCon layers to nothing.*conv dim \(8\)/);
    expect(validateConfig({ convDim: 0, convAlpha: 0 }).ok).toBe(true);
  });
  it('a run in epochs: warmup in steps is judged once the images are known', () => {
    expect(validateConfig({ maxEpochs: 3, warmup: 5000, warmupUnit: 'steps' }).ok).toBe(true);
    expect(errors({ maxEpochs: -1 }).maxEpochs).toBe('Epochs must be between 0 and 100000 (got -1)');
    expect(errors({ maxEpochs: 1.5 }).maxEpochs).toMatch(/whole number/);
  });
  it('Prodigy with the presets applied has no errors; with AdamW\'s LRs it has two', () => {
    expect(Object.keys(errors({ optimizer: 'prodigy' })).sort()).toEqual(['textEncoderLr', 'unetLr']);
    expect(validateConfig({ ...DEFAULT_CONFIG, optimizer: 'prodigy', ...OPTIMIZER_PRESETS.prodigy })).toMatchObject({ ok: true, config: { unetLr: 1, textEncoderLr: 1, maxGradNorm: 0 } });
  });
});
