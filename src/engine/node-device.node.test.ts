// nodeGpu() after its device is lost: the next call opens a fresh, working Dawn device (a long-lived process recovers), while a live one is shared.
// Node only: it destroys this process's device, so it runs in its own test file.
import { describe, expect, it } from 'vitest';
import { add, tensor } from './index.js';
import { nodeGpu } from './node.js';

describe('nodeGpu after device loss', () => {
  it('shares the live device, then gives a new one that computes once the old one is destroyed', async () => {
    const first = await nodeGpu();
    expect(await nodeGpu()).toBe(first);
    const x = tensor(first.backend, Float32Array.from([1, 2, 3, 4]), [4]);
    expect([...(await add(x, x).read())]).toEqual([2, 4, 6, 8]);
    first.device.destroy();
    expect((await first.lost).reason).toBe('destroyed');
    const second = await nodeGpu();
    expect(second.device).not.toBe(first.device);
    expect(second.backend).not.toBe(first.backend);
    const y = tensor(second.backend, Float32Array.from([1, 2, 3, 4]), [4]);
    expect([...(await add(y, y).read())]).toEqual([2, 4, 6, 8]);
    expect(await nodeGpu()).toBe(second);
  });
});
