// A person's path through the page: model, real images with captions (and bad files), settings, train (phases as the
// worker reports them, a double click, the model locked meanwhile, a true pause), download, a failed model load and an
// early Stop that both keep what was there.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { expect, test } from '@playwright/test';
import { dropFiles, scalarTensor } from './helpers.js';

const samples = 'public/samples';
const checker = '../shared/tools/check_lora.py';

/** A safetensors file whose names are SDXL's: a load fails once its header is read. */
function sdxlFile(): Buffer {
  const header = JSON.stringify({ 'conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight': { dtype: 'F16', shape: [1], data_offsets: [0, 2] } });
  const pad = ' '.repeat((8 - (header.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length + pad.length));
  return Buffer.concat([len, Buffer.from(header + pad), Buffer.alloc(2)]);
}

test('train the tiny demo on dropped photos and download the LoRA', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByTestId('adapter')).toContainText('GPU:');
  // The test machines have no GPU: SwiftShader is a software adapter, and the page says what that means.
  await expect(page.getByTestId('adapter-warning')).toContainText('training will be very slow');
  await page.getByRole('button', { name: 'Use the tiny demo model' }).click();
  await expect(page.getByTestId('model-status')).toContainText('Ready: tiny demo model — random weights: previews are noise by design', { timeout: 120_000 });

  // Start is refused while the dataset is empty; the message goes with the next action (adding images).
  const status = page.getByTestId('run-status');
  await page.getByRole('button', { name: 'Start training' }).click();
  await expect(status).toContainText('Add at least one image');

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
  await expect(status).toHaveText('');
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
  // LoCon: the ResBlocks' 3x3 convs at rank 2 too (conv alpha follows the conv dim, as kohya's default).
  await page.getByLabel('Conv dim (LoCon)').fill('2');
  await expect(page.getByLabel('Conv alpha')).toHaveValue('2');
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

  // No chart before there is data.
  await expect(page.getByTestId('loss-chart')).toHaveCount(0);
  // Two clicks in one task (before any re-render): one run (the worker would refuse a second start anyway).
  await page.getByRole('button', { name: 'Start training' }).evaluate((b: HTMLButtonElement) => (b.click(), b.click()));
  await expect(page.getByRole('button', { name: 'Start training' })).toBeDisabled();
  // Each phase before the first step with its progress and elapsed time, as the worker reports it.
  await expect(status).toContainText(/Encoding \d\/3 images with the VAE · \d+ s|Compiling GPU kernels/);
  // The model cannot change under the run: its actions are off (a note says why), a dropped checkpoint is not loaded.
  await expect(page.getByRole('button', { name: 'Use the tiny demo model' })).toBeDisabled();
  await expect(page.getByTestId('checkpoint-input')).toBeDisabled();
  await expect(page.getByTestId('model-locked')).toContainText('Model actions are off while a training run is active');
  await dropFiles(page, 'model-drop', [{ name: 'other.safetensors', bytes: sdxlFile() }]);
  await page.waitForTimeout(500);
  await expect(page.getByTestId('model-status')).toContainText('Ready: tiny demo model');
  // The first image compiles the VAE's kernels, the first step the U-Net's: minutes on a loaded software GPU.
  await expect(status).toHaveAttribute('data-phase', 'compiling', { timeout: 10 * 60_000 });
  await expect(status).toContainText(/Compiling GPU kernels: the first step builds every kernel it uses.* · \d+ s/);

  await expect(page.getByTestId('step-counter')).toContainText('step 3 /', { timeout: 15 * 60_000 });
  await expect(status).toHaveAttribute('data-phase', 'running');
  await expect(status).not.toContainText('Compiling');
  await page.getByRole('button', { name: 'Pause' }).click();
  // 'paused' comes from the worker once its loop waits (the step in flight reported first): nothing moves after it.
  await expect(status).toHaveAttribute('data-phase', 'paused', { timeout: 5 * 60_000 });
  await expect(status).toContainText('Paused');
  const counter = await page.getByTestId('step-counter').textContent();
  const paused = await page.getByTestId('loss-chart').getAttribute('data-points');
  // During the run: the pool's measured peak (live + cached buffers) beside the forecast.
  await expect(page.getByTestId('step-counter')).toContainText(/GPU [\d.]+ MiB held, peak [\d.]+ MiB \(forecast [\d.]+ MiB\)/);
  await expect(page.getByTestId('memory-measured')).toContainText(/Measured in this run: peak [\d.]+ MiB held on the GPU \(live and cached buffers\) \(\d+% of the forecast\), [\d.]+ MiB now/);
  await page.waitForTimeout(3000);
  expect(await page.getByTestId('step-counter').textContent()).toBe(counter);
  expect(await page.getByTestId('loss-chart').getAttribute('data-points')).toBe(paused);
  await page.getByRole('button', { name: 'Resume' }).click();
  // The README's screenshot: mid-run, once the step-6 preview is on the page.
  await expect(page.getByTestId('sample')).toBeVisible({ timeout: 10 * 60_000 });
  await page.screenshot({ path: 'docs/dashboard.png', fullPage: true });
  await expect(page.getByTestId('step-counter')).toContainText('step 12 / 12', { timeout: 10 * 60_000 });
  // One run's metrics: one point per step, and the step axis ticks are whole numbers.
  const points = Number(await page.getByTestId('loss-chart').getAttribute('data-points'));
  expect(points).toBe(12);
  expect(Number(paused)).toBeLessThan(12);
  const ticks = (await page.getByTestId('loss-chart').getAttribute('data-ticks'))!.split(',').map(Number);
  expect(ticks.length).toBeGreaterThan(1);
  for (const t of ticks) expect(Number.isInteger(t), `step axis tick ${t}`).toBe(true);
  // A preview rendered with the LoRA at the end of the run (and one at step 6 before it).
  await expect(page.getByTestId('sample')).toContainText('Step 12', { timeout: 5 * 60_000 });
  expect(await page.getByTestId('sample').locator('img').evaluate((i: HTMLImageElement) => i.naturalWidth)).toBe(64);

  await expect(page.getByTestId('download')).toBeVisible({ timeout: 120_000 });
  await expect(status).toHaveText('Finished 12 steps; the LoRA from step 12 is saved.', { timeout: 120_000 });
  // A LoRA of the demo model is called what it is; the AUTOMATIC1111/ComfyUI note is for real models.
  await expect(page.getByTestId('usage-note')).toContainText('for trying the app, not for AUTOMATIC1111');
  await expect(page.getByTestId('usage-note')).not.toContainText('models/Lora');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download').click()]);
  expect(download.suggestedFilename()).toBe('e2e-lora.safetensors');
  const path = await download.path();
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  expect(header.__metadata__.ss_output_name).toBe('e2e-lora');
  // 96 modules as without LoCon (84 U-Net, 12 text encoder) + the U-Net's 44 LoCon convs (3x3 and shortcuts) = 140.
  expect(Object.keys(header).filter((k) => k.endsWith('.lora_down.weight')).length).toBe(128 + 12);
  // LoCon (it threw in the forward before): a 3x3 conv at the conv dim with alpha = conv dim, a 1x1 shortcut at the network dim.
  expect(header['lora_unet_down_blocks_1_resnets_0_conv1.lora_down.weight'].shape).toEqual([2, 32, 3, 3]);
  expect(header['lora_unet_down_blocks_1_resnets_0_conv_shortcut.lora_down.weight'].shape).toEqual([16, 32, 1, 1]);
  expect(scalarTensor(bytes, 'lora_unet_down_blocks_1_resnets_0_conv1.alpha')).toBe(2);
  expect(JSON.parse(header.__metadata__.ss_network_args)).toMatchObject({ conv_dim: 2, conv_alpha: 2 });
  if (existsSync(checker)) expect(execFileSync('/usr/bin/python3', [checker, path], { encoding: 'utf8' })).toMatch(/^ok: 140 modules \(128 unet, 12 te\)/);
  else {
    // Said in the test output and the report, not skipped in silence.
    const why = `SKIPPED the A1111/ComfyUI reader check of the downloaded LoRA: ${checker} (../shared beside the checkout) is absent`;
    test.info().annotations.push({ type: 'skipped check', description: why });
    console.log(`train.spec.ts: ${why}`);
  }

  // Try it with the run's LoRA as the worker holds it, then a grid of the run's saves (the last 8 of 12) at strength 1.
  const tryPanel = page.getByTestId('try-drop');
  await expect(page.getByTestId('try-lora')).toContainText('this run: e2e-lora step 12');
  await tryPanel.getByLabel('Prompt', { exact: true }).fill('a photo of an astronaut');
  await tryPanel.getByLabel('Steps', { exact: true }).fill('1');
  await tryPanel.getByRole('button', { name: 'Render base and LoRA' }).click();
  await expect(page.getByTestId('try-lora-image')).toContainText('e2e-lora step 12 at 1', { timeout: 5 * 60_000 });
  // Pixels, not PNG bytes (their settings chunks differ anyway).
  const tryPixels = (id: string) =>
    page.getByTestId(id).locator('img').evaluate((i: HTMLImageElement) => {
      const g = new OffscreenCanvas(i.naturalWidth, i.naturalHeight).getContext('2d')!;
      g.drawImage(i, 0, 0);
      return Array.from(g.getImageData(0, 0, i.naturalWidth, i.naturalHeight).data).join();
    });
  expect(await tryPixels('try-lora-image')).not.toBe(await tryPixels('try-base'));
  await tryPanel.getByLabel('Grid strengths', { exact: true }).fill('1');
  await tryPanel.getByRole('button', { name: /Render X\/Y grid \(12 LoRAs/ }).click();
  await expect(page.getByTestId('try-grid').locator('thead th')).toHaveText(['strength', ...[5, 6, 7, 8, 9, 10, 11, 12].map((n) => `step ${n}`)], { timeout: 5 * 60_000 });
  await expect(page.getByTestId('try-message')).toContainText('The grid shows the last 8 LoRAs; 4 earlier left out.');
  expect(await tryPixels('try-cell-0-0')).not.toBe(await tryPixels('try-cell-0-7'));

  // The last saved LoRA survives closing the tab: after a reload it is offered again, byte for byte.
  await page.reload();
  await expect(page.getByTestId('recovered')).toContainText('e2e-lora');
  await expect(page.getByTestId('recovered')).toContainText('step 12');
  const [again] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download').click()]);
  expect(again.suggestedFilename()).toBe('e2e-lora.safetensors');
  expect(readFileSync(await again.path()).equals(bytes)).toBe(true);

  // A load that fails keeps the model that was ready, on the page and in the worker (the next run starts on it).
  await page.getByRole('button', { name: 'Use the tiny demo model' }).click();
  await expect(page.getByTestId('model-status')).toContainText('Ready', { timeout: 120_000 });
  await page.getByTestId('checkpoint-input').setInputFiles({ name: 'sdxl.safetensors', mimeType: 'application/octet-stream', buffer: sdxlFile() });
  await expect(page.getByTestId('model-failed')).toContainText('SDXL');
  await expect(page.getByTestId('model-failed')).toContainText('(tiny demo model is still loaded)');
  await expect(page.getByTestId('model-status')).toContainText('Ready: tiny demo model');

  // Stop while the images are encoded: the encoding ends, nothing is saved, the LoRA of step 12 stays.
  await page.getByRole('button', { name: 'Use the sample photos' }).click();
  await expect(page.getByTestId('dataset-count')).toContainText('8 images');
  await page.getByLabel('Run name').fill('stopped-early');
  await page.getByRole('button', { name: 'Start training' }).click();
  await expect(status).toHaveAttribute('data-phase', 'caching');
  await page.getByRole('button', { name: 'Stop' }).click();
  // Stop waits for the image being encoded (the first compiles the VAE's kernels), not for the other seven.
  await expect(status).toHaveAttribute('data-phase', 'done', { timeout: 5 * 60_000 });
  await expect(status).toHaveText('Stopped before the first step: nothing was trained or saved; the LoRA of “e2e-lora” from step 12 is kept.');
  await expect(page.getByTestId('download')).toContainText('e2e-lora.safetensors (step 12)');
  await page.reload();
  await expect(page.getByTestId('recovered')).toContainText('the LoRA of run “e2e-lora” as saved at step 12');
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
