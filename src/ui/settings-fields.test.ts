// The settings form reaches every config field, and the fields a change carries along.
import { describe, expect, it } from 'vitest';
import { CHOICES, DEFAULT_CONFIG, NETWORK_TYPES, OPTIMIZER_PRESETS, OPTIMIZERS, SCHEDULERS, validateConfig, type TrainConfig } from '../training/config.js';
import { ADVANCED, BASIC, NOT_ON_FORM, plural, withLinkedFields } from './settings-fields.js';

describe('the settings form', () => {
  it('has a field for every TrainConfig field but the ones it explains away', () => {
    const onForm = [...BASIC, ...ADVANCED].map((f) => f.key);
    expect(new Set(onForm).size).toBe(onForm.length);
    const missing = (Object.keys(DEFAULT_CONFIG) as (keyof TrainConfig)[]).filter((k) => !onForm.includes(k) && !(k in NOT_ON_FORM));
    expect(missing).toEqual([]);
    for (const k of ['captionDropout', 'tagDropout', 'convAlpha', 'lrCycles', 'lrPower', 'beta1', 'beta2', 'bucketStep', 'minBucket', 'maxBucket', 'maxAspect', 'huberDelta', 'loss', 'zeroTerminalSnr', 'maxEpochs', 'momentum'] as const)
      expect(onForm).toContain(k);
  });
  it('choosing Prodigy applies its preset (no errors left) and says so; back to AdamW restores its LRs', () => {
    const c = { ...DEFAULT_CONFIG };
    const { patch, note } = withLinkedFields(c, { optimizer: 'prodigy' });
    expect(patch).toEqual({ optimizer: 'prodigy', ...OPTIMIZER_PRESETS.prodigy });
    expect(note).toEqual({ key: 'optimizer', text: 'Set for prodigy: U-Net learning rate 1, Text-encoder learning rate 1, Max grad norm 0.' });
    expect(validateConfig({ ...c, ...patch }).ok).toBe(true);
    expect(withLinkedFields({ ...c, ...patch }, { optimizer: 'adamw' }).patch).toMatchObject({ unetLr: 1e-4, textEncoderLr: 5e-5, maxGradNorm: 1 });
    expect(withLinkedFields(c, { optimizer: 'adamw' })).toEqual({ patch: { optimizer: 'adamw' } }); // unchanged: nothing applied
  });
  it('choosing LoHa, LoKr or DoRA turns network dropout off and says so (no errors left)', () => {
    for (const t of ['loha', 'lokr', 'dora'] as const) {
      const { patch, note } = withLinkedFields(DEFAULT_CONFIG, { networkType: t });
      expect(patch).toEqual({ networkType: t, networkDropout: 0 });
      expect(note?.key).toBe('networkType');
      expect(validateConfig({ ...DEFAULT_CONFIG, ...patch }).ok).toBe(true);
    }
    const refused = validateConfig({ ...DEFAULT_CONFIG, networkType: 'loha' });
    expect(refused.ok ? {} : refused.errors).toEqual({ networkDropout: expect.stringContaining('set it to 0') });
  });
  it('conv alpha follows the conv dim until it is set to something else', () => {
    const c = { ...DEFAULT_CONFIG, convDim: 0, convAlpha: 0 };
    expect(withLinkedFields(c, { convDim: 8 }).patch).toEqual({ convDim: 8, convAlpha: 8 });
    expect(withLinkedFields({ ...c, convDim: 8, convAlpha: 8 }, { convDim: 4 }).patch).toEqual({ convDim: 4, convAlpha: 4 });
    expect(withLinkedFields({ ...c, convDim: 8, convAlpha: 2 }, { convDim: 4 }).patch).toEqual({ convDim: 4 });
    expect(withLinkedFields({ ...c, convDim: NaN, convAlpha: 8 }, { convDim: 4 }).patch).toEqual({ convDim: 4, convAlpha: 4 });
  });
  it("offers the config module's own option lists (optimizers, schedules, CHOICES), and the field's own check accepts every option of every select", () => {
    const field = (k: keyof TrainConfig) => [...BASIC, ...ADVANCED].find((f) => f.key === k)!;
    expect(field('optimizer').options).toBe(OPTIMIZERS);
    expect(field('scheduler').options).toBe(SCHEDULERS);
    expect(field('networkType').options).toBe(NETWORK_TYPES);
    for (const k of Object.keys(CHOICES) as (keyof typeof CHOICES)[]) expect(field(k).options, k).toBe(CHOICES[k]);
    for (const f of [...BASIC, ...ADVANCED].filter((f) => f.kind === 'select'))
      for (const o of f.options!) {
        const r = validateConfig({ ...DEFAULT_CONFIG, [f.key]: o });
        expect(r.ok ? undefined : r.errors[f.key], `${f.key} ${o}`).toBeUndefined();
      }
  });
  it('says 1 epoch, 2 epochs', () => {
    expect([plural(1, 'epoch'), plural(2, 'epoch'), plural(0, 'step')]).toEqual(['1 epoch', '2 epochs', '0 steps']);
  });
});
