// Auto-captioning in the page: a tagger-shaped model from a hub-shaped server, run by ORT in the worker, captions with the trigger first, edited, exported as .txt in a zip; a repository without the tagger files named; settings kept over a reload.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { expect, test } from '@playwright/test';
import { strFromU8, unzipSync } from 'fflate';
import { fixtureTaggerModel, fixtureTagsCsv } from '../src/training/tagger-fixture.js';
import { dropFiles } from './helpers.js';

/** `o/tagger` holds the fixture tagger (v3 names, 448² input); any other repository has nothing. */
async function startHub(): Promise<{ url: string; requests: string[]; server: Server }> {
  const files: Record<string, Uint8Array | string> = { 'o/tagger/model.onnx': fixtureTaggerModel(), 'o/tagger/selected_tags.csv': fixtureTagsCsv() };
  const requests: string[] = [];
  const server = createServer((req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length');
    res.setHeader('Cache-Control', 'no-store');
    if (req.method === 'OPTIONS') return void res.writeHead(204, { 'Access-Control-Allow-Methods': 'GET, HEAD' }).end();
    requests.push(`${req.method} ${req.url}`);
    const m = /^\/(.+)\/resolve\/main\/(.+)$/.exec(new URL(req.url!, 'http://x').pathname);
    const body = m ? files[`${m[1]}/${m[2]}`] : undefined;
    if (body === undefined) return void res.writeHead(404).end('Entry not found');
    const bytes = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body);
    res.writeHead(200, { 'Content-Length': bytes.length, 'Content-Type': 'application/octet-stream' }).end(bytes);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, server };
}

const solidPng = (page: import('@playwright/test').Page, rgb: string) =>
  page.evaluate(async (fill) => {
    const c = new OffscreenCanvas(96, 64);
    const g = c.getContext('2d')!;
    g.fillStyle = fill;
    g.fillRect(0, 0, 96, 64);
    return [...new Uint8Array(await (await c.convertToBlob({ type: 'image/png' })).arrayBuffer())];
  }, rgb);

test('captions the dataset with a hub tagger, trigger first, edited and exported; a wrong repository is named', async ({ page }) => {
  const hub = await startHub();
  try {
    await page.goto('/');
    await expect(page.getByTestId('adapter')).toContainText('GPU:');
    await page.getByLabel('Trigger word').fill('sks');
    const blue = Buffer.from(await solidPng(page, '#0000ff'));
    const red = Buffer.from(await solidPng(page, '#ff0000'));
    await dropFiles(page, 'dropzone', [
      { name: 'blue.png', bytes: blue, type: 'image/png' },
      { name: 'red.png', bytes: red, type: 'image/png' },
      { name: 'red.txt', bytes: Buffer.from('an old caption'), type: 'text/plain' },
    ]);
    await expect(page.getByTestId('dataset-count')).toContainText('2 images');
    await page.getByText('Auto-caption with a WD14 tagger').click();
    await page.getByText('Tagger server').click();
    await page.getByLabel('Tagger server').fill(hub.url);

    // A repository without the tagger's files: named, nothing changed.
    await page.getByLabel('Tagger repository').fill('o/nothing');
    await page.getByRole('button', { name: 'Caption all images' }).click();
    await expect(page.getByTestId('caption-result')).toContainText('o/nothing has no selected_tags.csv');
    await expect(page.getByLabel('caption of red.png')).toHaveValue('an old caption');

    // A threshold out of range is named by the form, and captioning waits for it.
    await page.getByLabel('Tag threshold', { exact: true }).fill('0');
    await expect(page.getByTestId('caption-field-error')).toContainText('The tag threshold must be a number above 0 and at most 1');
    await page.getByLabel('Tag threshold', { exact: true }).fill('');
    await expect(page.getByTestId('caption-field-error')).toHaveText('The tag threshold is empty: enter a number above 0 and at most 1 (0.35 is usual)');
    await expect(page.getByRole('button', { name: 'Caption all images' })).toBeDisabled();

    await page.getByLabel('Tagger repository').fill('o/tagger');
    await page.getByLabel('Character tag threshold').fill('0.85');
    await page.getByLabel('Tag threshold', { exact: true }).fill('0.5');
    await page.getByRole('button', { name: 'Caption all images' }).click();
    await expect(page.getByTestId('caption-result')).toContainText(/Captioned 2 images on (WebGPU|the CPU \(wasm\)) \(tagger downloaded/, { timeout: 120_000 });
    console.log(`caption e2e: ${await page.getByTestId('caption-result').textContent()}`);
    await expect(page.getByLabel('caption of blue.png')).toHaveValue('sks, blue sky, ^_^');
    await expect(page.getByLabel('caption of red.png')).toHaveValue('sks, red theme, ^_^');

    // Edited afterwards, then exported: the zip holds the edit.
    await page.getByLabel('caption of red.png').fill('sks, red theme, a red card');
    const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download captions (.zip)' }).click()]);
    const files = unzipSync(new Uint8Array(readFileSync(await dl.path())));
    expect(Object.fromEntries(Object.entries(files).map(([k, v]) => [k, strFromU8(v)]))).toEqual({ 'blue.txt': 'sks, blue sky, ^_^\n', 'red.txt': 'sks, red theme, a red card\n' });

    // Asked again, the open tagger is used; after a reload (a new worker) it comes from the browser's cache: no request reaches the hub.
    await page.getByRole('button', { name: 'Caption all images' }).click();
    await expect(page.getByTestId('caption-result')).toContainText('tagger already open');
    await page.reload();
    hub.requests.length = 0;
    await dropFiles(page, 'dropzone', [{ name: 'blue.png', bytes: blue, type: 'image/png' }]);
    await page.getByText('Auto-caption with a WD14 tagger').click();
    // The tagger settings survive the reload.
    await expect(page.getByLabel('Tagger repository')).toHaveValue('o/tagger');
    await expect(page.getByLabel('Tag threshold', { exact: true })).toHaveValue('0.5');
    await page.getByRole('button', { name: 'Caption all images' }).click();
    await expect(page.getByTestId('caption-result')).toContainText('Captioned 1 image on');
    await expect(page.getByTestId('caption-result')).toContainText('tagger from this browser');
    await expect(page.getByLabel('caption of blue.png')).toHaveValue('sks, blue sky, ^_^');
    expect(hub.requests).toEqual([]);
  } finally {
    hub.server.close();
  }
});
