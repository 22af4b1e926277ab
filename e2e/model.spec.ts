// Step 1 with the files people actually have: pickle checkpoints explained (never read), the resolution following the model, the memory line against the adapter's limits.
import { statSync } from 'node:fs';
import { expect, test } from '@playwright/test';
import { dropFiles } from './helpers.js';

/** The first bytes of a torch.save zip; the rest does not matter, the page never reads it. */
const ckpt = Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.alloc(60)]);

test('a .ckpt picked or dropped is explained with a way to convert it', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByTestId('adapter')).toContainText('GPU:');
  expect((await page.getByTestId('checkpoint-input').getAttribute('accept'))!.split(',')).toEqual(['.safetensors', '.ckpt', '.pt', '.pth', '.bin']);

  await page.getByTestId('checkpoint-input').setInputFiles({ name: 'v1-5-pruned-emaonly.ckpt', mimeType: 'application/octet-stream', buffer: ckpt });
  await expect(page.getByTestId('model-status')).toContainText('v1-5-pruned-emaonly.ckpt is a PyTorch pickle checkpoint (.ckpt)');
  await expect(page.getByTestId('model-status')).toHaveAttribute('role', 'alert');
  await expect(page.getByTestId('model-help')).toContainText("torch.load('v1-5-pruned-emaonly.ckpt', map_location='cpu', weights_only=True)");
  await expect(page.getByTestId('model-help')).toContainText("'v1-5-pruned-emaonly.safetensors'");

  // Dropped on the model panel: the same answer. Dropped among the images: skipped unread, with where it belongs.
  await dropFiles(page, 'model-drop', [{ name: 'anything-v3.pt', bytes: Buffer.from([0x80, 0x02, 0x7d, 0x71]) }]);
  await expect(page.getByTestId('model-status')).toContainText('anything-v3.pt is a PyTorch pickle checkpoint (.pt)');
  await dropFiles(page, 'dropzone', [{ name: 'model.safetensors', bytes: Buffer.alloc(16) }]);
  await expect(page.getByTestId('skipped')).toContainText('model.safetensors: a model checkpoint: load it in step 1 (Base model)');
});

test('the resolution follows the loaded model, a size chosen for that model is kept, and the memory line shows the limits and fixes', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByTestId('adapter')).toContainText('GPU:');
  // Set before any model is loaded: the model's own size wins when it loads, and the page says so.
  await page.getByLabel('Resolution').fill('512');
  await page.getByRole('button', { name: 'Use the tiny demo model' }).click();
  await expect(page.getByTestId('model-status')).toContainText('Ready', { timeout: 120_000 });
  await expect(page.getByTestId('model-status')).toContainText("resolution set to 64, this model's native size");
  await expect(page.getByLabel('Resolution')).toHaveValue('64');
  // Per-part load progress, kept as a summary.
  await expect(page.getByTestId('load-components')).toContainText(/U-Net: [\d.]+ MiB loaded ✓/);
  await expect(page.getByTestId('load-components')).toContainText(/text encoder: \d+ KiB loaded ✓/);
  await expect(page.getByTestId('load-components')).toContainText(/VAE: \d+ KiB loaded ✓/);

  // The forecast against the adapter's limits, and what is known of the device's memory.
  await expect(page.getByTestId('memory')).toContainText(/Estimated GPU memory [\d.]+ MiB .*largest buffer \d+ MiB of \d+ MiB allowed \(adapter: \d+ MiB per storage binding, \d+ MiB per buffer\)/);
  await expect(page.getByTestId('device-memory')).toContainText('WebGPU does not report how much memory the GPU has');
  await expect(page.getByTestId('memory-warning')).toHaveCount(0);

  // Past 8 GiB: a warning, and changes the forecast says would fit; applying one clears it. (Batch 12: since
  // the LoRA and residual adds run in the GEMM epilogues, batch 8 at 2048 is forecast at 6.3 GiB, 12 at 9.6 GiB.)
  await page.getByLabel('Batch size').fill('12');
  await page.getByLabel('Resolution').fill('2048');
  await expect(page.getByTestId('memory-warning')).toContainText('more than most 8.0 GiB cards have', { timeout: 60_000 });
  await expect(page.getByTestId('memory-warning')).toContainText('batch size 1 with gradient accumulation 12 (same effective batch)');
  await page.getByTestId('memory-warning').getByRole('button', { name: 'Apply' }).first().click();
  await expect(page.getByLabel('Batch size')).toHaveValue('1');
  await expect(page.getByTestId('memory-warning')).toHaveCount(0, { timeout: 60_000 });

  // Chosen with the model loaded: kept after a reload and a new load of the same model.
  await page.getByLabel('Resolution').fill('128');
  await page.reload();
  await expect(page.getByLabel('Resolution')).toHaveValue('128');
  await page.getByRole('button', { name: 'Use the tiny demo model' }).click();
  await expect(page.getByTestId('model-status')).toContainText('Ready', { timeout: 120_000 });
  await expect(page.getByLabel('Resolution')).toHaveValue('128');
  await expect(page.getByTestId('model-status')).not.toContainText('resolution');

  // A checkpoint refused (a pickle) while a model is ready: the ready model stays, with the reason and the fix.
  await page.getByTestId('checkpoint-input').setInputFiles({ name: 'v1-5-pruned-emaonly.ckpt', mimeType: 'application/octet-stream', buffer: ckpt });
  await expect(page.getByTestId('model-failed')).toContainText('v1-5-pruned-emaonly.ckpt is a PyTorch pickle checkpoint (.ckpt)');
  await expect(page.getByTestId('model-failed')).toContainText('(tiny demo model is still loaded)');
  await expect(page.getByTestId('model-status')).toContainText('Ready: tiny demo model');
  await expect(page.getByTestId('model-help')).toContainText('weights_only=True');
});

test('a dropped single-file checkpoint is read in slices, never whole, with per-part progress', async ({ page }) => {
  const worker = page.waitForEvent('worker');
  await page.goto('/');
  await expect(page.getByTestId('adapter')).toContainText('GPU:');
  // Every read of a Blob's bytes inside the training worker, by size.
  const w = await worker;
  await w.evaluate(() => {
    const reads: number[] = ((self as unknown as { __reads: number[] }).__reads = []);
    const arrayBuffer = Blob.prototype.arrayBuffer;
    Blob.prototype.arrayBuffer = function (this: Blob) {
      reads.push(this.size);
      return arrayBuffer.call(this);
    };
  });
  const file = 'public/tiny-sd1.safetensors';
  const size = statSync(file).size;
  await dropFiles(page, 'model-drop', [{ name: 'tiny-sd1.safetensors', path: file }]);
  await expect(page.getByTestId('model-status')).toContainText('Ready: tiny-sd1.safetensors', { timeout: 120_000 });
  await expect(page.getByTestId('load-components')).toContainText(/U-Net: [\d.]+ MiB loaded ✓/);
  await expect(page.getByTestId('load-components')).toContainText(/text encoder: \d+ KiB loaded ✓/);
  await expect(page.getByTestId('load-components')).toContainText(/VAE: \d+ KiB loaded ✓/);
  const reads = await w.evaluate(() => (self as unknown as { __reads: number[] }).__reads);
  expect(reads.length).toBeGreaterThan(10);
  expect(Math.max(...reads)).toBeLessThan(size / 4);
});
