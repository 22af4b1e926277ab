// Dropping real files on the page's drop target, as a person's drag and drop would.
import { readFileSync } from 'node:fs';
import type { Page } from '@playwright/test';

export async function dropFiles(page: Page, testId: string, files: { name: string; path?: string; bytes?: Buffer; type?: string }[]): Promise<void> {
  const payload = files.map((f) => ({ name: f.name, type: f.type ?? '', b64: (f.bytes ?? readFileSync(f.path!)).toString('base64') }));
  const dt = await page.evaluateHandle((items) => {
    const d = new DataTransfer();
    for (const it of items) d.items.add(new File([Uint8Array.from(atob(it.b64), (c) => c.charCodeAt(0))], it.name, { type: it.type }));
    return d;
  }, payload);
  await page.getByTestId(testId).dispatchEvent('drop', { dataTransfer: dt });
}

/** The value of a scalar tensor (a module's `.alpha`) in a safetensors file, stored as f16 or f32. */
export function scalarTensor(bytes: Buffer, name: string): number {
  const n = Number(bytes.readBigUInt64LE(0));
  const t = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'))[name];
  const at = 8 + n + t.data_offsets[0];
  if (t.dtype === 'F32') return bytes.readFloatLE(at);
  const h = bytes.readUInt16LE(at);
  const e = (h >> 10) & 31;
  return (h >> 15 ? -1 : 1) * (e === 0 ? (h & 1023) / 1024 / 16384 : (1 + (h & 1023) / 1024) * 2 ** (e - 15));
}
