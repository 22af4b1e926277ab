// The DDPM noise schedule SD was trained with, SNR weighting and the prediction targets (float64 on the CPU).

/** alphas_cumprod of the scaled-linear schedule (1000 steps, betas sqrt-linear from 0.00085 to 0.012). */
export function alphasCumprod(zeroTerminalSnr = false, steps = 1000): Float64Array {
  const a = Math.sqrt(0.00085);
  const b = Math.sqrt(0.012);
  const acp = new Float64Array(steps);
  let prod = 1;
  for (let i = 0; i < steps; i++) {
    const beta = (a + ((b - a) * i) / (steps - 1)) ** 2;
    prod *= 1 - beta;
    acp[i] = prod;
  }
  if (!zeroTerminalSnr) return acp;
  // Lin et al. 2023: shift and scale sqrt(acp) so the last step has zero SNR and the first is unchanged.
  const s = acp.map(Math.sqrt);
  const s0 = s[0]!;
  const sT = s[steps - 1]!;
  return s.map((v) => ((v - sT) * s0) / (s0 - sT)).map((v) => v * v);
}

export function snr(acp: number): number {
  return acp / (1 - acp);
}

/** Min-SNR-γ loss weight for one timestep (1 when γ is 0). */
export function minSnrWeight(acp: number, gamma: number, prediction: 'epsilon' | 'v_prediction'): number {
  if (gamma <= 0) return 1;
  const s = snr(acp);
  return prediction === 'epsilon' ? Math.min(s, gamma) / s : Math.min(s, gamma) / (s + 1);
}
