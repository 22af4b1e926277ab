// The dataset panel without training: a zip with captions, junk and a broken image; captions edited in place; the bucket counts.
import { readFileSync } from 'node:fs';
import { expect, test } from '@playwright/test';
import { zipSync } from 'fflate';
import { dropFiles } from './helpers.js';

const samples = 'public/samples';

test('a dropped zip: images with captions, junk listed and skipped, captions editable, buckets counted', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByTestId('adapter')).toContainText('GPU:');
  const zip = zipSync({
    'set/astronaut.png': readFileSync(`${samples}/astronaut.png`),
    'set/astronaut.txt': readFileSync(`${samples}/astronaut.txt`),
    'set/coffee.jpg': readFileSync(`${samples}/coffee.jpg`),
    'set/notes.pdf': new TextEncoder().encode('%PDF-1.4 not an image'),
    'set/broken.png': readFileSync(`${samples}/astronaut.png`).subarray(0, 200),
    '__MACOSX/set/._astronaut.png': new Uint8Array([0, 5, 22, 7]),
  });
  await dropFiles(page, 'dropzone', [{ name: 'dataset.zip', bytes: Buffer.from(zip), type: 'application/zip' }]);
  await expect(page.getByTestId('dataset-count')).toContainText('2 images, 2 skipped');
  const skipped = page.getByTestId('skipped');
  await expect(skipped).toContainText('set/notes.pdf: not an image');
  await expect(skipped).toContainText('broken.png');
  await expect(skipped).not.toContainText('__MACOSX');
  // Captions from the sidecar .txt; an image without one starts empty and is edited in place.
  await expect(page.getByLabel('caption of astronaut.png')).toHaveValue(readFileSync(`${samples}/astronaut.txt`, 'utf8').trim());
  await expect(page.getByLabel('caption of coffee.jpg')).toHaveValue('');
  await page.getByLabel('caption of coffee.jpg').fill('a cup of coffee on a saucer');
  await expect(page.getByLabel('caption of coffee.jpg')).toHaveValue('a cup of coffee on a saucer');
  // Both photos are wider than tall, or square: the count follows the settings' resolution.
  await expect(page.getByTestId('dataset-count')).toContainText(/buckets: \d+x\d+: \d/);
  await page.getByLabel('Resolution').fill('512');
  await expect(page.getByTestId('dataset-count')).toContainText(/buckets: .*(512x512|576x448|640x384)/);
  // Removing one image, then clearing all.
  await page.getByRole('button', { name: 'remove coffee.jpg' }).click();
  await expect(page.getByTestId('dataset-count')).toContainText('1 image');
  await expect(page.getByLabel('caption of coffee.jpg')).toHaveCount(0);
  await page.getByRole('button', { name: 'Clear all' }).click();
  await expect(page.getByTestId('dataset-count')).toHaveText('0 images');
});

test('the bundled sample photos in one click, with their captions; adding them again does not duplicate them', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByTestId('adapter')).toContainText('GPU:');
  const { files } = JSON.parse(readFileSync(`${samples}/manifest.json`, 'utf8')) as { files: string[] };
  const photos = files.filter((f) => !f.endsWith('.txt'));
  await page.getByRole('button', { name: 'Use the sample photos' }).click();
  await expect(page.getByTestId('dataset-count')).toContainText(`${photos.length} images`);
  await expect(page.getByLabel('caption of chelsea.png')).toHaveValue(readFileSync(`${samples}/chelsea.txt`, 'utf8').trim());
  await page.getByRole('button', { name: 'Use the sample photos' }).click();
  await expect(page.getByRole('button', { name: 'Use the sample photos' })).toBeEnabled();
  await expect(page.getByTestId('dataset-count')).toContainText(`${photos.length} images`);
  await expect(page.getByTestId('dataset-count')).not.toContainText('skipped');
});

test('without WebGPU the page says what to do instead of breaking', async ({ page }) => {
  await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
  await page.goto('/');
  await expect(page.getByRole('heading', { name: 'LoRASmith needs WebGPU' })).toBeVisible();
  await expect(page.getByRole('alert')).toContainText('navigator.gpu is undefined');
  await expect(page.getByText(/Chrome and Edge 113 or newer/)).toContainText('chrome://flags/#enable-unsafe-webgpu');
  await expect(page.getByTestId('dropzone')).toHaveCount(0);
});
