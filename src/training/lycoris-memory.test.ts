// The settings summary's memory forecast (meta device) runs for LoHa, LoKr and DoRA on SD 1.5, and says what the merged layer weights cost over LoRA.
import { describe, expect, it } from 'vitest';
import { SD15_CLIP } from '../model/clip.js';
import { SD15_UNET } from '../model/unet.js';
import { SD15_VAE } from '../model/vae.js';
import { DEFAULT_CONFIG } from './config.js';
import { estimateTrainingMemory } from './memory.js';

const sd15 = { unet: SD15_UNET, clip: SD15_CLIP, vae: SD15_VAE };
const gib = (b: number) => b / 2 ** 30;

describe('memory forecast of the LyCORIS types', () => {
  it('SD 1.5 at 256, rank 8, checkpointing: each type forecasts, above LoRA and under 8 GiB', () => {
    const at = (networkType: (typeof DEFAULT_CONFIG)['networkType']) =>
      estimateTrainingMemory(sd15, { ...DEFAULT_CONFIG, resolution: 256, networkDim: 8, networkAlpha: 8, networkType, networkDropout: networkType === 'lora' ? 0.1 : 0, gradientCheckpointing: true });
    const lora = at('lora');
    for (const t of ['loha', 'lokr', 'dora'] as const) {
      const e = at(t);
      console.log(`SD 1.5 ${t} at 256 (rank 8, TE trained, checkpointing): peak ${gib(e.peakBytes).toFixed(2)} GiB vs LoRA ${gib(lora.peakBytes).toFixed(2)} GiB, network+grads+AdamW ${(e.networkBytes / 2 ** 20).toFixed(1)} MiB`);
      expect(e.peakBytes).toBeGreaterThan(lora.peakBytes);
      expect(gib(e.peakBytes)).toBeLessThan(8);
      expect(e.networkBytes).toBeGreaterThan(0);
    }
  });
});
