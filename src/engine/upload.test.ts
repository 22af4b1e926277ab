// Uploads while commands are being encoded: staged and copied in encoding order, with no submit of their own.
import { describe, expect, it } from 'vitest';
import { add } from './ops/elementwise.js';
import { tensor } from './tensor.js';
import { testBackend } from './testing/gpu.js';

describe('uploads between dispatches', () => {
  it('land in encoding order (work before a write sees the old bytes, work after it the new) without submitting', async () => {
    const b = await testBackend();
    const x = tensor(b, [1, 2, 3, 4], [4]);
    const one = tensor(b, [1, 1, 1, 1], [4]);
    await b.sync();
    const s0 = b.stats.submits;
    const before = add(x, one);
    // Two writes into the same storage within one submit: each copy must read its own staged bytes.
    x.write(new Float32Array([10, 20, 30, 40]));
    const middle = add(x, one);
    x.write(new Float32Array([100, 200, 300, 400]));
    const after = add(x, one);
    expect(b.stats.submits).toBe(s0);
    expect(Array.from(await before.read())).toEqual([2, 3, 4, 5]);
    expect(Array.from(await middle.read())).toEqual([11, 21, 31, 41]);
    expect(Array.from(await after.read())).toEqual([101, 201, 301, 401]);
    for (const t of [x, one, before, middle, after]) t.dispose();
  });
});
