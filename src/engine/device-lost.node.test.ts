// A lost device (here destroyed on purpose; in the field a driver reset) turns a pending or later read
// into an error that says what happened, instead of a hang or an opaque "operation failed".
// Node only: it destroys this process's device, so it runs in its own test file.
import { describe, expect, it } from 'vitest';
import { GpuBackend, GpuDeviceLostError } from './backend.js';
import { nodeGpu } from './node.js';
import { add, tensor } from './index.js';

describe('device lost', () => {
  it('reads after the device is destroyed reject with GpuDeviceLostError', async () => {
    const { device } = await nodeGpu();
    const b = new GpuBackend(device);
    const x = tensor(b, Float32Array.from([1, 2, 3, 4]), [4]);
    const y = add(x, x);
    expect([...(await y.read())]).toEqual([2, 4, 6, 8]);
    const pending = add(y, x).read();
    device.destroy();
    await expect(pending.then(() => 'read', (e: unknown) => e)).resolves.toSatisfy((r) => r === 'read' || r instanceof GpuDeviceLostError);
    const after = await y.read().catch((e: unknown) => e);
    expect(after).toBeInstanceOf(GpuDeviceLostError);
    expect((after as Error).message).toMatch(/GPU device was lost \(destroyed/);
    expect(b.lostInfo?.reason).toBe('destroyed');
  });
});
