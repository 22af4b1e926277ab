// The storage check before a hub download: persistent storage asked for large downloads, numbers when space is short.
import { describe, expect, it } from 'vitest';
import { checkStorage, PERSIST_FROM_BYTES } from './storage.js';

const fake = (quota: number, usage: number, grant = true) => {
  const calls: string[] = [];
  const s = {
    persist: async () => (calls.push('persist'), grant),
    estimate: async () => (calls.push('estimate'), { quota, usage }),
  } as unknown as StorageManager;
  return { s, calls };
};
const GiB = 2 ** 30;

describe('checkStorage', () => {
  it('asks for persistent storage before a multi-GB download, then compares with the quota', async () => {
    const { s, calls } = fake(100 * GiB, 10 * GiB);
    const r = await checkStorage(2 * GiB, s);
    expect(calls).toEqual(['persist', 'estimate']);
    expect(r.enough).toBe(true);
    expect(r.message).toBe('the download needs 2.00 GiB; 90.00 GiB free of the 100.00 GiB this browser allows the site (10.00 GiB used), kept as persistent storage');
  });
  it('says how much is missing with the numbers', async () => {
    const { s } = fake(3 * GiB, 2 * GiB, false);
    const r = await checkStorage(2 * GiB, s);
    expect(r.enough).toBe(false);
    expect(r.message).toMatch(/^The download needs 2\.00 GiB of browser storage but only 1\.00 GiB free of the 3\.00 GiB/);
  });
  it('does not ask for small downloads, and goes ahead when nothing is known', async () => {
    const { s, calls } = fake(100 * GiB, 0);
    await checkStorage(PERSIST_FROM_BYTES - 1, s);
    expect(calls).toEqual(['estimate']);
    expect((await checkStorage(GiB, {} as StorageManager)).enough).toBe(true);
  });
});
