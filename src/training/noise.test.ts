// The DDPM noise schedule, SNR and min-SNR weights, noising, v targets and noise offset against closed forms.
import { describe, expect, it } from 'vitest';
import { addNoise, alphasCumprod, applyNoiseOffset, ddpmSchedule, minSnrWeight, noisingCoefficients, predictionTarget, sampleTimestep, scaledLinearBetas, snr, velocity } from './noise.js';
import { Rng } from './rng.js';

// Reference values: numpy float64, betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)**2, acp = cumprod(1 - betas),
// and Lin et al.'s rescale applied to the same arrays.
describe('DDPM schedule', () => {
  it('scaled-linear betas run from 0.00085 to 0.012', () => {
    const b = scaledLinearBetas();
    expect(b[0]).toBeCloseTo(0.00085, 17);
    expect(b[999]).toBeCloseTo(0.012, 17);
    const mid = ((Math.sqrt(0.00085) + Math.sqrt(0.012)) / 2) ** 2; // not exactly the 499/500 point, bracketed by them
    expect(b[499]! < mid && mid < b[500]!).toBe(true);
  });
  it('alphas_cumprod matches the float64 closed form', () => {
    const acp = alphasCumprod();
    expect(acp).toHaveLength(1000);
    expect(acp[0]).toBe(0.99915);
    expect(acp[1]).toBeCloseTo(0.9982960278384514, 15);
    expect(acp[499]).toBeCloseTo(0.27766965045646763, 14);
    expect(acp[999]).toBeCloseTo(0.004660098513077238, 15);
    for (let t = 1; t < 1000; t++) expect(acp[t]!).toBeLessThan(acp[t - 1]!);
  });
  it('zero terminal SNR makes the last step pure noise and keeps the first', () => {
    const s = ddpmSchedule({ zeroTerminalSnr: true });
    expect(s.alphasCumprod[999]).toBe(0);
    expect(s.snr[999]).toBe(0);
    expect(s.alphasCumprod[0]).toBeCloseTo(0.99915, 14);
    expect(s.alphasCumprod[499]).toBeCloseTo(0.24235916655614523, 13);
    expect(s.alphasCumprod[998]).toBeCloseTo(1.9678880566212913e-7, 18);
    expect(s.betas[999]).toBe(1);
  });
  it('SNR is acp / (1 - acp)', () => {
    const s = ddpmSchedule();
    expect(s.snr[0]).toBeCloseTo(1175.47058823527, 8);
    expect(s.snr[999]).toBeCloseTo(0.004681916706157956, 15);
    expect(snr(0.5)).toBe(1);
  });
});

describe('min-SNR weights', () => {
  const acp = alphasCumprod();
  it('epsilon: min(snr, γ) / snr', () => {
    expect(minSnrWeight(acp[10]!, 5, 'epsilon')).toBeCloseTo(5 / snr(acp[10]!), 14); // snr > 5: 5/snr
    expect(minSnrWeight(acp[900]!, 5, 'epsilon')).toBe(1); // snr < 5
    expect(minSnrWeight(0.75, 5, 'epsilon')).toBe(1); // snr 3
    expect(minSnrWeight(10 / 11, 5, 'epsilon')).toBeCloseTo(0.5, 14); // snr 10
  });
  it('v-prediction: min(snr, γ) / (snr + 1)', () => {
    expect(minSnrWeight(0.75, 5, 'v_prediction')).toBeCloseTo(3 / 4, 14);
    expect(minSnrWeight(10 / 11, 5, 'v_prediction')).toBeCloseTo(5 / 11, 14);
    expect(minSnrWeight(acp[900]!, 5, 'v_prediction')).toBeCloseTo(acp[900]!, 14); // snr/(snr+1) = acp
  });
  it('γ = 0 is off, and zero SNR has a finite weight', () => {
    expect(minSnrWeight(acp[10]!, 0, 'epsilon')).toBe(1);
    expect(minSnrWeight(0, 5, 'epsilon')).toBe(1);
    expect(minSnrWeight(0, 5, 'v_prediction')).toBe(0);
  });
});

describe('noising and targets', () => {
  const x0 = Float32Array.from([1, -2, 0.5, 0]);
  const eps = Float32Array.from([0.3, 0.1, -1, 2]);
  it('x_t and v use sqrt(acp) and sqrt(1 - acp)', () => {
    const a = 0.64;
    expect(noisingCoefficients(a)).toEqual({ signal: 0.8, noise: Math.sqrt(1 - 0.64) });
    const xt = addNoise(x0, eps, a);
    const v = velocity(x0, eps, a);
    const [s, n] = [0.8, Math.sqrt(0.36)];
    for (let i = 0; i < 4; i++) {
      expect(xt[i]).toBeCloseTo(s * x0[i]! + n * eps[i]!, 6);
      expect(v[i]).toBeCloseTo(s * eps[i]! - n * x0[i]!, 6);
      expect(s * xt[i]! - n * v[i]!).toBeCloseTo(x0[i]!, 5); // x0 = sqrt(acp) x_t - sqrt(1-acp) v
    }
    expect([...predictionTarget('epsilon', x0, eps, a)]).toEqual([...eps]);
    expect([...predictionTarget('v_prediction', x0, eps, a)]).toEqual([...v]);
  });
  it('noise offset shifts each channel by one shared draw', () => {
    const noise = new Float32Array(8);
    applyNoiseOffset(noise, 2, 0.1, new Rng(1));
    const r = new Rng(1);
    const [o0, o1] = [Math.fround(0.1 * r.normal()), Math.fround(0.1 * r.normal())];
    expect([...noise]).toEqual([o0, o0, o0, o0, o1, o1, o1, o1]);
    expect(() => applyNoiseOffset(new Float32Array(7), 2, 0.1, new Rng(1))).toThrow(RangeError);
    expect([...applyNoiseOffset(new Float32Array(2), 2, 0, new Rng(1))]).toEqual([0, 0]);
  });
  it('timesteps are uniform in [0, 1000)', () => {
    const r = new Rng(0);
    const ts = Array.from({ length: 5000 }, () => sampleTimestep(r));
    expect(Math.min(...ts)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...ts)).toBeLessThan(1000);
    expect(ts.every(Number.isInteger)).toBe(true);
    expect(ts.reduce((a, b) => a + b, 0) / ts.length).toBeCloseTo(499.5, -1);
  });
});
