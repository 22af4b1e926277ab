// A person's path through the page: model, real images with captions (and bad files), settings, train, pause, download.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { expect, test } from '@playwright/test';
import { dropFiles } from './helpers.js';

const samples = 'public/samples';
const checker = '../shared/tools/check_lora.py';

test('train the tiny demo on dropped photos and download the LoRA', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByTestId('adapter')).toContainText('GPU:');
  await page.getByRole('button', { name: 'Use the tiny demo model' }).click();
  await expect(page.getByTestId('model-status')).toContainText('Ready', { timeout: 120_000 });

  // Start is refused while the dataset is empty.
  await page.getByRole('button', { name: 'Start training' }).click();
  await expect(page.getByTestId('run-status')).toContainText('Add at least one image');

  await dropFiles(page, 'dropzone', [
    { name: 'astronaut.png', path: `${samples}/astronaut.png`, type: 'image/png' },
    { name: 'astronaut.txt', path: `${samples}/astronaut.txt` },
    { name: 'coffee.jpg', path: `${samples}/coffee.jpg`, type: 'image/jpeg' },
    { name: 'coffee.txt', path: `${samples}/coffee.txt` },
    { name: 'chelsea.png', path: `${samples}/chelsea.png`, type: 'image/png' },
    { name: 'notes.pdf', bytes: Buffer.from('%PDF-1.4 not an image'), type: 'application/pdf' },
    { name: 'broken.png', bytes: Buffer.concat([readFileSync(`${samples}/brick.png`).subarray(0, 200)]), type: 'image/png' },
  ]);
  await expect(page.getByTestId('dataset-count')).toContainText('3 images, 2 skipped');
  await expect(page.getByTestId('skipped')).toContainText('notes.pdf');
  await expect(page.getByTestId('skipped')).toContainText('broken.png');
  await expect(page.getByLabel('caption of astronaut.png')).toHaveValue(/astronaut/);

  // Invalid settings: a field error, and start refused.
  await page.getByLabel('Batch size').fill('-2');
  await expect(page.getByTestId('error-batchSize')).toContainText('between 1 and 64');
  await page.getByRole('button', { name: 'Start training' }).click();
  await expect(page.getByTestId('run-status')).toContainText('Fix the highlighted settings');
  await page.getByLabel('Batch size').fill('1');
  await page.getByLabel('Base steps').fill('12');
  await page.getByLabel('Run name').fill('e2e-lora');
  await page.getByText('Advanced', { exact: true }).click();
  await page.getByLabel('Sample every').fill('6');
  await page.getByLabel('Sample steps').fill('2');
  await expect(page.getByTestId('summary')).toContainText('12 optimizer steps');
  // With the model loaded, the meta device's estimate appears against the adapter's binding limit.
  await expect(page.getByTestId('memory')).toContainText(/Estimated GPU memory [\d.]+ MiB .* of \d+ MiB allowed/);

  // Settings survive a reload (images do not, by design).
  await page.reload();
  await expect(page.getByLabel('Base steps')).toHaveValue('12');
  await expect(page.getByLabel('Run name')).toHaveValue('e2e-lora');
  await page.getByRole('button', { name: 'Use the tiny demo model' }).click();
  await expect(page.getByTestId('model-status')).toContainText('Ready', { timeout: 120_000 });
  await dropFiles(page, 'dropzone', ['astronaut.png', 'astronaut.txt', 'coffee.jpg', 'coffee.txt', 'chelsea.png', 'chelsea.txt'].map((n) => ({ name: n, path: `${samples}/${n}` })));
  await expect(page.getByTestId('dataset-count')).toContainText('3 images');

  await page.getByRole('button', { name: 'Start training' }).click();
  await expect(page.getByTestId('step-counter')).toContainText('step 3 /', { timeout: 15 * 60_000 });
  await page.getByRole('button', { name: 'Pause' }).click();
  await expect(page.getByTestId('run-status')).toContainText('Paused');
  const paused = await page.getByTestId('loss-chart').getAttribute('data-points');
  // During the run: the pool's measured peak (live + cached buffers) beside the forecast.
  await expect(page.getByTestId('step-counter')).toContainText(/GPU [\d.]+ MiB held, peak [\d.]+ MiB \(forecast [\d.]+ MiB\)/);
  await expect(page.getByTestId('memory-measured')).toContainText(/Measured in this run: peak [\d.]+ MiB held on the GPU \(live and cached buffers\) \(\d+% of the forecast\), [\d.]+ MiB now/);
  await page.waitForTimeout(3000);
  await page.getByRole('button', { name: 'Resume' }).click();
  // The README's screenshot: mid-run, once the step-6 preview is on the page.
  await expect(page.getByTestId('sample')).toBeVisible({ timeout: 10 * 60_000 });
  await page.screenshot({ path: 'docs/dashboard.png', fullPage: true });
  await expect(page.getByTestId('step-counter')).toContainText('step 12 / 12', { timeout: 10 * 60_000 });
  const points = Number(await page.getByTestId('loss-chart').getAttribute('data-points'));
  expect(points).toBe(12);
  expect(Number(paused)).toBeLessThan(12);
  // A preview rendered with the LoRA at the end of the run (and one at step 6 before it).
  await expect(page.getByTestId('sample')).toContainText('Step 12', { timeout: 5 * 60_000 });
  expect(await page.getByTestId('sample').locator('img').evaluate((i: HTMLImageElement) => i.naturalWidth)).toBe(64);

  await expect(page.getByTestId('download')).toBeVisible({ timeout: 120_000 });
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download').click()]);
  expect(download.suggestedFilename()).toBe('e2e-lora.safetensors');
  const path = await download.path();
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  expect(header.__metadata__.ss_output_name).toBe('e2e-lora');
  expect(Object.keys(header).filter((k) => k.endsWith('.lora_down.weight')).length).toBe(84 + 12);
  if (existsSync(checker)) expect(execFileSync('/usr/bin/python3', [checker, path], { encoding: 'utf8' })).toMatch(/^ok: 96 modules \(84 unet, 12 te\)/);
  else {
    // Said in the test output and the report, not skipped in silence.
    const why = `SKIPPED the A1111/ComfyUI reader check of the downloaded LoRA: ${checker} (../shared beside the checkout) is absent`;
    test.info().annotations.push({ type: 'skipped check', description: why });
    console.log(`train.spec.ts: ${why}`);
  }

  // The last saved LoRA survives closing the tab: after a reload it is offered again, byte for byte.
  await page.reload();
  await expect(page.getByTestId('recovered')).toContainText('e2e-lora');
  await expect(page.getByTestId('recovered')).toContainText('step 12');
  const [again] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download').click()]);
  expect(again.suggestedFilename()).toBe('e2e-lora.safetensors');
  expect(readFileSync(await again.path()).equals(bytes)).toBe(true);
});

test('a model file that is not SD 1.x gets a clear error', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByTestId('adapter')).toContainText('GPU:');
  const header = JSON.stringify({ 'conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight': { dtype: 'F16', shape: [1], data_offsets: [0, 2] } });
  const pad = ' '.repeat((8 - (header.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length + pad.length));
  await page.getByTestId('checkpoint-input').setInputFiles({ name: 'sdxl.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.concat([len, Buffer.from(header + pad), Buffer.alloc(2)]) });
  await expect(page.getByTestId('model-status')).toContainText('SDXL');
  await expect(page.getByTestId('model-status')).toContainText('Stable Diffusion 1.x');
});
