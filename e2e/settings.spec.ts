// Settings that must work from the page: optimizer presets, emptied fields, conv alpha following conv dim, epochs.
import { expect, test } from '@playwright/test';
import { dropFiles } from './helpers.js';

test('Prodigy applies its LRs, an emptied field says required, conv alpha follows conv dim, run length in epochs', async ({ page }) => {
  await page.goto('/');
  await page.getByRole('button', { name: 'Use the tiny demo model' }).click();
  await expect(page.getByTestId('model-status')).toContainText('Ready', { timeout: 120_000 });
  await dropFiles(page, 'dropzone', ['astronaut.png', 'astronaut.txt'].map((n) => ({ name: n, path: `public/samples/${n}` })));
  await page.getByText('Advanced', { exact: true }).click();

  // Prodigy: LRs become its multipliers of 1 with clipping off, said under the field, and no errors.
  await page.getByLabel('Optimizer', { exact: true }).selectOption('prodigy');
  await expect(page.getByTestId('note-optimizer')).toContainText('Set for prodigy: U-Net learning rate 1, Text-encoder learning rate 1, Max grad norm 0');
  await expect(page.getByLabel('U-Net learning rate')).toHaveValue('1');
  await expect(page.getByLabel('Text-encoder learning rate')).toHaveValue('1');
  await expect(page.getByTestId('summary')).toContainText('U-Net LR 1.00e+0');
  await expect(page.locator('section[aria-labelledby="set-h"] .error')).toHaveCount(0);
  await page.getByLabel('Optimizer', { exact: true }).selectOption('adamw');
  await expect(page.getByLabel('U-Net learning rate')).toHaveValue('0.0001');

  // An emptied field says what it needs, not "got NaN".
  await page.getByLabel('Batch size').fill('');
  await expect(page.getByTestId('error-batchSize')).toHaveText('Batch size is required: a whole number between 1 and 64');
  await page.getByLabel('Batch size').fill('1');
  await expect(page.getByTestId('error-batchSize')).toHaveCount(0);

  // Conv alpha is on the form and follows the conv dim (kohya's default).
  await expect(page.getByLabel('Conv alpha')).toHaveValue('0');
  await page.getByLabel('Conv dim (LoCon)').fill('2');
  await expect(page.getByLabel('Conv alpha')).toHaveValue('2');

  // Run length in epochs: one image at batch 1, so one step an epoch. (The LoCon run itself is in train.spec.ts's
  // training flow: a second flow would compile every GPU kernel again, minutes on a software GPU.)
  await page.getByLabel('Epochs', { exact: true }).fill('1');
  await expect(page.getByTestId('summary')).toContainText('1 optimizer step · 1 epoch ·');
  await page.getByLabel('Epochs', { exact: true }).fill('2');
  await expect(page.getByTestId('summary')).toContainText('2 optimizer steps · 2 epochs');
});
