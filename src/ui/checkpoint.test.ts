// Pickle checkpoints are recognised by extension or first bytes and answered with a way to convert them.
import { describe, expect, it } from 'vitest';
import { CHECKPOINT_ACCEPT, pickleCheckpoint } from './checkpoint.js';

const safetensorsHead = new Uint8Array([0x10, 0x00, 0, 0, 0, 0, 0, 0]);

describe('pickleCheckpoint', () => {
  it('the picker offers pickles so that it can explain them', () => {
    expect(CHECKPOINT_ACCEPT.split(',')).toEqual(['.safetensors', '.ckpt', '.pt', '.pth', '.bin']);
  });
  it('explains a .ckpt and gives a command that writes a .safetensors of the same name', () => {
    const r = pickleCheckpoint('v1-5-pruned-emaonly.ckpt', new Uint8Array([0x50, 0x4b, 3, 4, 0, 0, 0, 0]))!;
    expect(r.message).toMatch(/^v1-5-pruned-emaonly\.ckpt is a PyTorch pickle checkpoint \(\.ckpt\)/);
    expect(r.message).toContain('does not read them');
    expect(r.help).toContain("torch.load('v1-5-pruned-emaonly.ckpt', map_location='cpu', weights_only=True)");
    expect(r.help).toContain("'v1-5-pruned-emaonly.safetensors'");
  });
  it('finds a pickle by its bytes whatever its name, and leaves safetensors alone', () => {
    expect(pickleCheckpoint('model.safetensors', new Uint8Array([0x80, 0x02, 0x7d, 0x71, 0, 0, 0, 0]))).not.toBeNull();
    expect(pickleCheckpoint('model.safetensors', safetensorsHead)).toBeNull();
    expect(pickleCheckpoint('model.PTH', safetensorsHead)).not.toBeNull();
  });
});
