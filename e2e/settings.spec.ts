// Settings that must work from the page: optimizer presets, emptied fields, conv alpha, and a short LoCon run on the tiny demo.
import { readFileSync } from 'node:fs';
import { expect, test } from '@playwright/test';
import { dropFiles } from './helpers.js';

/** Value of a scalar tensor (the `.alpha`s) of a safetensors file, f16 or f32. */
function scalar(bytes: Buffer, name: string): number {
  const n = Number(bytes.readBigUInt64LE(0));
  const t = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'))[name];
  const at = 8 + n + t.data_offsets[0];
  if (t.dtype === 'F32') return bytes.readFloatLE(at);
  const h = bytes.readUInt16LE(at);
  const e = (h >> 10) & 31;
  return (h >> 15 ? -1 : 1) * (e === 0 ? (h & 1023) / 1024 / 16384 : (1 + (h & 1023) / 1024) * 2 ** (e - 15));
}

test('Prodigy applies its LRs, an emptied field says required, conv alpha follows conv dim, and a LoCon run trains', async ({ page }) => {
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

  // A two-step LoCon run (it threw in the forward before): the file has conv modules with alpha = conv dim.
  // Run length in epochs: one image at batch 1, so one step an epoch.
  await page.getByLabel('Epochs', { exact: true }).fill('1');
  await expect(page.getByTestId('summary')).toContainText('1 optimizer step · 1 epoch ·');
  await page.getByLabel('Epochs', { exact: true }).fill('2');
  await page.getByLabel('Train the text encoder').uncheck();
  await page.getByLabel('Sample steps').fill('0');
  await page.getByLabel('Run name').fill('locon-e2e');
  await expect(page.getByTestId('summary')).toContainText('2 optimizer steps · 2 epochs');
  await page.getByRole('button', { name: 'Start training' }).click();
  await expect(page.getByTestId('step-counter')).toContainText('step 2 / 2', { timeout: 10 * 60_000 });
  await expect(page.getByTestId('download')).toContainText('step 2', { timeout: 120_000 });
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download').click()]);
  const bytes = readFileSync(await download.path());
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
  expect(header['lora_unet_down_blocks_1_resnets_0_conv1.lora_down.weight'].shape).toEqual([2, 32, 3, 3]);
  expect(header['lora_unet_down_blocks_1_resnets_0_conv_shortcut.lora_down.weight'].shape).toEqual([16, 32, 1, 1]);
  expect(scalar(bytes, 'lora_unet_down_blocks_1_resnets_0_conv1.alpha')).toBe(2);
  expect(JSON.parse(header.__metadata__.ss_network_args)).toMatchObject({ conv_dim: 2, conv_alpha: 2 });
});
