// Loading a diffusers repo from a hub-shaped server: downloaded once, then served from the browser cache, also with the server gone.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve, sep } from 'node:path';
import { expect, test, type Page } from '@playwright/test';

const ROOT = resolve('public/tiny');

interface Hub {
  url: string;
  /** `METHOD /path` of every request after the CORS preflight, in order. */
  requests: string[];
  close(): Promise<void>;
}

/**
 * Any `<owner>/<name>` repo answers with public/tiny, the way huggingface.co answers
 * `/<repo>/resolve/main/<file>`: Range (206 + Content-Range), HEAD, CORS, 404 for what is not there.
 * `cutOnce` files are cut off halfway through the first time they are fetched whole; `slow` files
 * trickle out in 128 KiB pieces 40 ms apart, so that the page's download progress can be seen.
 * Requests for `*.fp16.safetensors` get 404 unless `fp16` is set.
 */
async function startHub({ cutOnce = [], slow = [], fp16 = false }: { cutOnce?: string[]; slow?: string[]; fp16?: boolean } = {}): Promise<Hub> {
  const requests: string[] = [];
  const cut = new Set(cutOnce);
  const server: Server = createServer((req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Range, Content-Length, Accept-Ranges, ETag');
    res.setHeader('Cache-Control', 'no-store'); // so that only the page's own cache can spare a request
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { 'Access-Control-Allow-Headers': 'Range', 'Access-Control-Allow-Methods': 'GET, HEAD' }).end();
      return;
    }
    requests.push(`${req.method} ${req.url}`);
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/main\/(.+)$/.exec(decodeURIComponent(new URL(req.url!, 'http://x').pathname));
    // With `fp16`, every weight file also has an fp16 variant (the same bytes here).
    const file = m && !m[1]!.startsWith('missing') && (fp16 || !m[3]!.includes('.fp16.')) ? join(ROOT, m[3]!.replace('.fp16.', '.')) : null;
    if (!file || !file.startsWith(ROOT + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Entry not found');
      return;
    }
    const size = statSync(file).size;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const type = file.endsWith('.json') ? 'application/json' : 'application/octet-stream';
    if (range) {
      const start = Number(range[1]);
      const end = Math.min(range[2] ? Number(range[2]) : size - 1, size - 1);
      if (start > end) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
        return;
      }
      res.writeHead(206, { 'Content-Type': type, 'Accept-Ranges': 'bytes', 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': end - start + 1 });
      if (req.method === 'HEAD') res.end();
      else createReadStream(file, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, { 'Content-Type': type, 'Accept-Ranges': 'bytes', 'Content-Length': size });
    if (req.method === 'HEAD') return void res.end();
    if (cut.delete(m![3]!)) {
      createReadStream(file, { start: 0, end: (size >> 1) - 1 }).on('end', () => res.socket?.destroy()).pipe(res, { end: false });
      return;
    }
    if (slow.includes(m![3]!)) {
      const s = createReadStream(file, { highWaterMark: 128 * 1024 });
      s.on('data', (chunk) => {
        res.write(chunk);
        s.pause();
        setTimeout(() => s.resume(), 40);
      }).on('end', () => res.end());
      return;
    }
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((ok) => (server.closeAllConnections(), server.close(() => ok()))),
  };
}

async function loadFromHub(page: Page, endpoint: string, repo: string): Promise<void> {
  await expect(page.getByTestId('adapter')).toContainText('GPU:');
  if (!(await page.getByLabel('Hub endpoint').isVisible())) await page.getByText('Hub endpoint', { exact: true }).click();
  await page.getByLabel('Hub endpoint').fill(endpoint);
  await page.getByLabel('Hugging Face repo id').fill(repo);
  await page.getByRole('button', { name: 'Load from the Hub' }).click();
}

const status = (page: Page) => page.getByTestId('model-status');

test('a hub repo is downloaded once, then loads from the browser cache, also with the server stopped', async ({ page }) => {
  const hub = await startHub({ slow: ['unet/diffusion_pytorch_model.safetensors'] });
  try {
    await page.goto('/');
    await loadFromHub(page, hub.url, 'lorasmith/tiny-sd');
    await expect(status(page)).toContainText(/Loading unet\/diffusion_pytorch_model\.safetensors \(\d\.\d MiB of 2\.8 MiB downloaded\)… \d+%/);
    // Per part: the U-Net downloading, the others waiting.
    await expect(page.getByTestId('load-components')).toContainText(/U-Net: downloading [\d.]+ MiB of 2\.8 MiB/);
    await expect(status(page)).toContainText('Ready: lorasmith/tiny-sd', { timeout: 120_000 });
    await expect(page.getByTestId('load-components')).toContainText(/U-Net: 2\.\d MiB loaded ✓/);
    await expect(page.getByTestId('load-components')).toContainText(/VAE: \d+ KiB loaded ✓/);
    await expect(status(page)).toContainText(/downloaded 3\.\d MiB \(8 files, now kept in the browser cache\)/);
    expect(hub.requests).toContain('GET /lorasmith/tiny-sd/resolve/main/unet/diffusion_pytorch_model.safetensors');
    expect(hub.requests).toContain('GET /lorasmith/tiny-sd/resolve/main/tokenizer/vocab.json');
    const seen = hub.requests.length;

    // Another visit, server still up: not one request.
    await page.reload();
    await loadFromHub(page, hub.url, 'lorasmith/tiny-sd');
    await expect(status(page)).toContainText('Ready: lorasmith/tiny-sd', { timeout: 120_000 });
    await expect(status(page)).toContainText('loaded from browser cache');
    await expect(status(page)).not.toContainText('downloaded');
    expect(hub.requests.length).toBe(seen);
  } finally {
    await hub.close();
  }

  // And with the server gone.
  await page.reload();
  await loadFromHub(page, hub.url, 'lorasmith/tiny-sd');
  await expect(status(page)).toContainText('Ready: lorasmith/tiny-sd', { timeout: 120_000 });
  await expect(status(page)).toContainText('loaded from browser cache');
  expect(hub.requests.length).toBeGreaterThan(0);

  // A repo never downloaded, with the server gone, says what to check.
  await loadFromHub(page, hub.url, 'lorasmith/other');
  await expect(status(page)).toContainText(`lorasmith/other: could not download unet/config.json from ${hub.url}`);
  await expect(status(page)).toContainText('not in the browser cache');

  // The page lists what it keeps, and deleting it means the next load needs the server again.
  await expect(page.getByTestId('cached-models')).toContainText(/Kept in this browser: lorasmith\/tiny-sd \(3\.\d MiB\)/);
  await page.getByRole('button', { name: 'Delete downloaded models' }).click();
  await expect(page.getByTestId('cached-models')).toHaveCount(0);
  await loadFromHub(page, hub.url, 'lorasmith/tiny-sd');
  await expect(status(page)).toContainText(`lorasmith/tiny-sd: could not download unet/config.json from ${hub.url}`);
});

test('a repo id that does not exist says so and what to check', async ({ page }) => {
  const hub = await startHub();
  try {
    await page.goto('/');
    await loadFromHub(page, hub.url, 'missing-owner/no-such-model');
    await expect(status(page)).toContainText(`missing-owner/no-such-model: unet/config.json was not found on ${hub.url} (HTTP 404). Check the repository id`);
    await expect(status(page)).toHaveAttribute('role', 'alert');
  } finally {
    await hub.close();
  }
});

test('a download cut off halfway leaves nothing in the cache; the next load downloads that file again', async ({ page }) => {
  const unet = 'unet/diffusion_pytorch_model.safetensors';
  const hub = await startHub({ cutOnce: [unet] });
  try {
    await page.goto('/');
    await loadFromHub(page, hub.url, 'lorasmith/tiny-sd');
    await expect(status(page)).toContainText(`lorasmith/tiny-sd: the download of ${unet} from ${hub.url} stopped after`, { timeout: 120_000 });
    await expect(status(page)).toContainText('nothing was cached');
    const url = `${hub.url}/lorasmith/tiny-sd/resolve/main/${unet}`;
    const cached = await page.evaluate(async (u) => (await caches.open('lorasmith-hub-v1')).match(u).then((r) => r !== undefined), url);
    expect(cached).toBe(false);

    const before = hub.requests.length;
    await page.getByRole('button', { name: 'Load from the Hub' }).click();
    await expect(status(page)).toContainText('Ready: lorasmith/tiny-sd', { timeout: 120_000 });
    // The five config and tokenizer files read before the cut came from the cache; the three weights were downloaded.
    await expect(status(page)).toContainText('(3 files, now kept in the browser cache), 5 files loaded from browser cache');
    // (HEAD requests ask for sizes and variants before anything is downloaded.)
    const gets = hub.requests.slice(before).filter((r) => r.startsWith('GET '));
    expect(gets.map((r) => r.split('/').slice(-2).join('/'))).toEqual([unet, 'text_encoder/model.safetensors', 'vae/diffusion_pytorch_model.safetensors']);
  } finally {
    await hub.close();
  }
});

test('before downloading, the page compares what a repo needs with the browser storage left, and says so with the numbers', async ({ page }) => {
  const hub = await startHub({ fp16: true });
  try {
    // A browser that lets this site store 1 MiB more: less than the 3.4 MiB of weights.
    await page.addInitScript(() => {
      StorageManager.prototype.estimate = async () => ({ quota: 2 * 2 ** 20, usage: 2 ** 20 });
    });
    await page.goto('/');
    await loadFromHub(page, hub.url, 'lorasmith/tiny-sd');
    await expect(status(page)).toContainText(/The download needs 3\.\d MiB of browser storage but only 1\.0 MiB free of the 2\.0 MiB this browser allows the site \(1\.0 MiB used\)/);
    await expect(status(page)).toHaveAttribute('role', 'alert');
    expect(hub.requests.filter((r) => r.startsWith('GET ') && r.endsWith('.safetensors'))).toEqual([]);
    expect(hub.requests.filter((r) => r.startsWith('HEAD '))).toContain('HEAD /lorasmith/tiny-sd/resolve/main/unet/diffusion_pytorch_model.fp16.safetensors');

    // The person may go ahead anyway.
    await page.getByRole('button', { name: /Download anyway/ }).click();
    await expect(status(page)).toContainText('Ready: lorasmith/tiny-sd', { timeout: 120_000 });
    // The fp16 variants were taken, and only they were downloaded.
    await expect(page.getByTestId('model-notes')).toContainText('all three weight files taken as their fp16 variants');
    const weights = hub.requests.filter((r) => r.startsWith('GET ') && r.endsWith('.safetensors'));
    expect(weights.length).toBe(3);
    expect(weights.every((r) => r.endsWith('.fp16.safetensors'))).toBe(true);
  } finally {
    await hub.close();
  }
});
