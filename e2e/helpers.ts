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
