// Validation in the page: an image marked as held out, the validation loss charted beside the training loss, the best step
// marked and its LoRA downloaded (with the losses in its metadata), the saves within their budget, per-image losses in the grid.
import { readFileSync } from 'node:fs';
import { expect, test } from '@playwright/test';
import { dropFiles } from './helpers.js';

const samples = 'public/samples';

/** The metadata of a downloaded safetensors file. */
function metadataOf(bytes: Buffer): Record<string, string> {
  return JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8')).__metadata__;
}

test('hold out an image, chart its validation loss and download the best step', async ({ page }) => {
  await page.goto('/');
  await page.getByRole('button', { name: 'Use the tiny demo model' }).click();
  await expect(page.getByTestId('model-status')).toContainText('Ready', { timeout: 120_000 });
  const names = ['astronaut.png', 'coffee.jpg', 'chelsea.png'];
  await dropFiles(page, 'dropzone', names.flatMap((n) => [{ name: n, path: `${samples}/${n}` }, { name: n.replace(/\.\w+$/, '.txt'), path: `${samples}/${n.replace(/\.\w+$/, '.txt')}` }]));
  await expect(page.getByTestId('dataset-count')).toContainText('3 images');

  await page.getByLabel('Base steps').fill('4');
  await page.getByLabel('Run name').fill('val-lora');
  await page.getByText('Advanced', { exact: true }).click();
  await page.getByLabel('Sample steps').fill('0');
  await page.getByLabel('Save every').fill('4');
  await page.getByLabel('Validation', { exact: true }).selectOption('holdout');
  await page.getByLabel('Validation split').fill('0');
  // Nothing held out yet: the form says which setting to change.
  await expect(page.getByTestId('error-validationSplit')).toContainText('No image is held out for validation');
  await page.getByLabel('validation image coffee.jpg').check();
  await page.getByLabel('Validate every').fill('1');
  // The plan counts the two images that train.
  await expect(page.getByTestId('summary')).toContainText('validation loss every 1 step');
  await expect(page.getByTestId('error-validationSplit')).toHaveCount(0);

  await page.getByRole('button', { name: 'Start training' }).click();
  await expect(page.getByTestId('run-status')).toHaveAttribute('data-phase', 'done', { timeout: 10 * 60_000 });

  // One validation loss per step, charted as its own series with the best step marked.
  await expect(page.getByTestId('validation-line')).toContainText('Validation loss');
  await expect(page.getByTestId('validation-line')).toContainText('at step 4');
  await expect(page.getByTestId('loss-chart')).toHaveAttribute('data-series', /^loss\|smoothed\|validation\|best \(step \d\)$/);
  const bestStep = Number(/best \(step (\d)\)/.exec((await page.getByTestId('loss-chart').getAttribute('data-series'))!)![1]);

  // The held-out image has a validation loss and no training loss; the others the reverse.
  const figure = (n: string) => page.locator('figure', { has: page.getByAltText(n) });
  await expect(figure('coffee.jpg').getByTestId('image-validation-loss')).toContainText('validation loss');
  await expect(figure('coffee.jpg').getByTestId('image-loss')).toHaveCount(0);
  for (const n of ['astronaut.png', 'chelsea.png']) await expect(figure(n).getByTestId('image-loss')).toContainText(/loss \d\.\d{4} \(\d samples?\)/);

  // The best step's save is kept and downloads, with the validation losses in its metadata.
  await expect(page.getByTestId('saves-line')).toContainText(/saves? kept, [\d.]+ MB of the 256 MB budget/);
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-best').click()]);
  expect(download.suggestedFilename()).toBe(`val-lora-step${bestStep}.safetensors`);
  const meta = metadataOf(readFileSync((await download.path())!));
  expect(meta.ss_steps).toBe(String(bestStep));
  expect(meta.lorasmith_validation_best_step).toBe(String(bestStep));
  expect(JSON.parse(meta.lorasmith_validation_losses!).map((p: [number, number]) => p[0])).toEqual(Array.from({ length: bestStep }, (_, i) => i + 1));

  // The budget is a setting that survives a reload; a bad value is refused by name.
  await page.getByLabel('Saves budget (MB)').fill('3');
  await expect(page.getByTestId('saves')).toContainText('The saves budget must be a whole number of MB between 16 and 4096');
  await page.getByLabel('Saves budget (MB)').fill('64');
  await page.reload();
  await expect.poll(() => page.evaluate(() => JSON.parse(localStorage.getItem('lorasmith-settings')!).state.savesBudgetMB)).toBe(64);
  // The saves list came back from OPFS with the validation's best: Result offers the same best save again.
  await expect(page.getByTestId('download-best')).toContainText(`val-lora-step${bestStep}.safetensors`);
  await expect(page.getByTestId('validation-line')).toContainText(`at step 4 · best`);
  await expect(page.getByLabel('Saves budget (MB)')).toHaveValue('64');
});
