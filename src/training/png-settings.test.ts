// A rendered image's PNG (Try-it panel, `lorasmith sample`): pixels exact, and its settings in tEXt chunks read back by an independent chunk walker (CRCs by node:zlib).
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { infotext, readSettingsPng, settingsPng, type ImageSettings } from './png-settings.js';

const settings: ImageSettings = {
  prompt: 'a photo of sks cat, café 猫 🐱',
  negativePrompt: 'blurry, lowres',
  seed: 1234,
  steps: 20,
  guidance: 7.5,
  width: 4,
  height: 2,
  sampler: 'euler_a',
  strength: 0.8,
  lora: 'my-run step 12',
  model: 'tiny demo model',
};

/** Every chunk of a PNG by its own layout (length, type, data, CRC over type + data), not by fast-png. */
function chunks(png: Uint8Array): { type: string; data: Uint8Array; crcOk: boolean }[] {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out = [];
  for (let at = 8; at < png.length; ) {
    const n = view.getUint32(at);
    const body = png.subarray(at + 4, at + 8 + n);
    out.push({ type: String.fromCharCode(...body.subarray(0, 4)), data: body.subarray(4), crcOk: crc32(body) === view.getUint32(at + 8 + n) });
    at += 12 + n;
  }
  return out;
}

describe('settingsPng', () => {
  const pixels = Uint8ClampedArray.from({ length: 4 * 2 * 4 }, (_, i) => (i * 37) % 256);

  it('writes the exact pixels and two tEXt chunks with valid CRCs', () => {
    const png = settingsPng({ width: 4, height: 2, data: pixels }, settings);
    const all = chunks(png);
    expect(all.every((c) => c.crcOk)).toBe(true);
    const text = Object.fromEntries(
      all.filter((c) => c.type === 'tEXt').map((c) => {
        const nul = c.data.indexOf(0);
        return [new TextDecoder('latin1').decode(c.data.subarray(0, nul)), new TextDecoder('latin1').decode(c.data.subarray(nul + 1))];
      }),
    );
    expect(Object.keys(text).sort()).toEqual(['lorasmith', 'parameters']);
    // The JSON chunk gives back every setting exactly, the non-Latin-1 prompt included.
    expect(JSON.parse(text.lorasmith!)).toEqual(settings);
    expect(text.parameters).toBe(
      'a photo of sks cat, café \\u732b \\ud83d\\udc31\nNegative prompt: blurry, lowres\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, Size: 4x2, Model: tiny demo model, Lora: my-run step 12, Lora strength: 0.8',
    );
    const back = readSettingsPng(png);
    expect([back.width, back.height]).toEqual([4, 2]);
    expect(Array.from(back.data)).toEqual(Array.from(pixels));
    expect(back.settings).toEqual(settings);
  });

  it('leaves the LoRA out of the base image and refuses pixels of the wrong size', () => {
    const base = { ...settings, strength: 0, lora: undefined };
    expect(infotext(base)).not.toContain('Lora');
    expect(() => settingsPng({ width: 4, height: 4, data: pixels }, base)).toThrow('32 bytes is not RGBA 4x4');
  });
});
