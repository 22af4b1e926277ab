// The dataset panel without training: a zip with kohya folders, captions, junk and a broken image; captions edited in place; the bucket counts.
import { readFileSync } from 'node:fs';
import { expect, test } from '@playwright/test';
import { zipSync } from 'fflate';
import { dropFiles } from './helpers.js';

const samples = 'public/samples';

test('a dropped zip: kohya N_ folders with same-named images, captions paired by path, junk listed once, captions editable, buckets counted', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByTestId('adapter')).toContainText('GPU:');
  const zip = zipSync({
    'set/astronaut.png': readFileSync(`${samples}/astronaut.png`),
    'set/astronaut.txt': readFileSync(`${samples}/astronaut.txt`),
    'set/coffee.jpg': readFileSync(`${samples}/coffee.jpg`),
    'set/notes.pdf': new TextEncoder().encode('%PDF-1.4 not an image'),
    'set/broken.png': readFileSync(`${samples}/astronaut.png`).subarray(0, 200),
    '__MACOSX/set/._astronaut.png': new Uint8Array([0, 5, 22, 7]),
    // kohya's layout: 10 repeats of the cat folder, 5 of the other; both hold a 1.png with its own 1.txt.
    'train/10_cat/1.png': readFileSync(`${samples}/chelsea.png`),
    'train/10_cat/1.txt': new TextEncoder().encode('a cat on a rug\n'),
    'train/5_coffee/1.png': readFileSync(`${samples}/coins.png`),
    'train/5_coffee/1.txt': new TextEncoder().encode('coins on a table'),
    'train/5_coffee/orphan.txt': new TextEncoder().encode('a caption whose image is missing'),
    'train/5_coffee/empty.png': new Uint8Array(0),
  });
  await dropFiles(page, 'dropzone', [{ name: 'dataset.zip', bytes: Buffer.from(zip), type: 'application/zip' }]);
  await expect(page.getByTestId('dataset-count')).toContainText('4 images, 4 skipped');
  const skipped = page.getByTestId('skipped');
  await expect(skipped).toContainText('set/notes.pdf: not an image');
  await expect(skipped).toContainText('train/5_coffee/orphan.txt: a caption without its image');
  await expect(skipped).toContainText('train/5_coffee/empty.png: empty file (0 bytes)');
  // A broken image is named once, by path, in the same `path: reason` wording.
  await expect(skipped.getByText(/broken\.png/)).toHaveText(/^set\/broken\.png: [^:]*$/);
  await expect(skipped).not.toContainText('skipped');
  await expect(skipped).not.toContainText('__MACOSX');
  // Same-named images in two folders are two images, each with its own folder's caption.
  await expect(page.getByLabel('caption of train/10_cat/1.png')).toHaveValue('a cat on a rug');
  await expect(page.getByLabel('caption of train/5_coffee/1.png')).toHaveValue('coins on a table');
  // Repeats per folder, and the plan counts them: 10 + 5 + 2 × the Repeats setting (1) = 17 images an epoch, 200 steps = 12 epochs.
  const folders = page.getByTestId('dataset-folders');
  await expect(folders).toContainText('10_cat: 1 image × 10 repeats = 10 per epoch');
  await expect(folders).toContainText('5_coffee: 1 image × 5 repeats = 5 per epoch');
  await expect(folders).toContainText('set: 2 images × 1 repeat (the Repeats setting) = 2 per epoch');
  await expect(folders).toContainText('17 images per epoch in all');
  await expect(page.getByTestId('summary')).toContainText('200 optimizer steps');
  await expect(page.getByTestId('summary')).toContainText('12 epochs');
  // Captions from the sidecar .txt; an image without one is kept with a note, and edited in place.
  await expect(page.getByLabel('caption of set/astronaut.png')).toHaveValue(readFileSync(`${samples}/astronaut.txt`, 'utf8').trim());
  await expect(page.getByLabel('caption of set/coffee.jpg')).toHaveValue('');
  await expect(page.getByTestId('caption-note')).toHaveText(['no caption file: trained on the trigger word alone']);
  await page.getByLabel('caption of set/coffee.jpg').fill('a cup of coffee on a saucer');
  await expect(page.getByLabel('caption of set/coffee.jpg')).toHaveValue('a cup of coffee on a saucer');
  // A long caption is shown whole in its box (no hidden overflow to scroll through).
  const long = 'a cup of coffee on a saucer, latte art, wooden table, morning light, shallow depth of field, film grain';
  await page.getByLabel('caption of set/coffee.jpg').fill(long);
  expect(await page.getByLabel('caption of set/coffee.jpg').evaluate((t: HTMLTextAreaElement) => [t.tagName, t.scrollHeight <= t.clientHeight + 1])).toEqual(['TEXTAREA', true]);
  await page.getByLabel('caption of set/coffee.jpg').fill('a cup of coffee on a saucer');
  await expect(page.getByTestId('caption-note')).toHaveCount(0);
  // The same zip again: every image replaces its copy (by path), and nothing is listed twice.
  await dropFiles(page, 'dropzone', [{ name: 'dataset.zip', bytes: Buffer.from(zip), type: 'application/zip' }]);
  await expect(page.getByTestId('dataset-added')).toContainText('Added 4 images, 4 earlier copies of the same path replaced');
  await expect(page.getByTestId('dataset-count')).toContainText('4 images, 4 skipped');
  // Both photos are wider than tall, or square: the count follows the settings' resolution.
  await expect(page.getByTestId('dataset-count')).toContainText(/buckets: \d+x\d+: \d/);
  await page.getByLabel('Resolution').fill('512');
  await expect(page.getByTestId('dataset-count')).toContainText(/buckets: .*(512x512|576x448|640x384)/);
  // Removing one image, then clearing all.
  await page.getByRole('button', { name: 'remove set/coffee.jpg' }).click();
  await expect(page.getByTestId('dataset-count')).toContainText('3 images');
  await expect(page.getByLabel('caption of set/coffee.jpg')).toHaveCount(0);
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
  // Only the second add's result says copies were replaced: the count below is read after it finished.
  await expect(page.getByTestId('dataset-added')).toContainText(`Added ${photos.length} images, ${photos.length} earlier copies of the same path replaced`);
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
