// Recovery after a crash: a run reloaded mid-way (the leave-page prompt asked first) is offered again, goes on with the images kept in OPFS, and ends with the LoRA of a run never interrupted; its saves list survives the reload, and a second tab cannot train meanwhile.
import { readFileSync } from 'node:fs';
import { expect, test, type Page } from '@playwright/test';
import { dropFiles } from './helpers.js';

const samples = 'public/samples';

/** A safetensors file's tensors by name: dtype, shape and raw bytes (the metadata is left out: it holds the run's times). */
function tensors(bytes: Buffer): Map<string, { dtype: string; shape: number[]; data: Buffer }> {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, { dtype: string; shape: number[]; data: Buffer }>();
  for (const [k, t] of Object.entries(header)) if (k !== '__metadata__') out.set(k, { dtype: t.dtype, shape: t.shape, data: bytes.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]) });
  return out;
}

async function download(page: Page, testId = 'download'): Promise<Buffer> {
  const [d] = await Promise.all([page.waitForEvent('download'), page.getByTestId(testId).click()]);
  return readFileSync(await d.path());
}

/** The tiny demo, two captioned photos at 64x64 (one bucket), the U-Net only, 6 steps saved every 2, no previews: few kernels to compile, few steps. */
async function setUp(page: Page): Promise<void> {
  await page.goto('/');
  await page.getByRole('button', { name: 'Use the tiny demo model' }).click();
  await expect(page.getByTestId('model-status')).toContainText('Ready', { timeout: 120_000 });
  await dropFiles(page, 'dropzone', ['astronaut.png', 'astronaut.txt', 'coffee.jpg', 'coffee.txt'].map((n) => ({ name: n, path: `${samples}/${n}` })));
  await expect(page.getByTestId('dataset-count')).toContainText('2 images');
  await page.getByLabel('Run name').fill('recovered-lora');
  await page.getByLabel('Base steps').fill('6');
  await page.getByText('Advanced', { exact: true }).click();
  await page.getByLabel('Train the text encoder').uncheck();
  await page.getByLabel('Aspect-ratio buckets').uncheck();
  await page.getByLabel('Save every').fill('2');
  await page.getByLabel('Sample steps').fill('0');
  await expect(page.getByTestId('summary')).toContainText('6 optimizer steps');
}

const FINISHED = 'Finished 6 steps; the LoRA from step 6 is saved.';

test('a run reloaded mid-way continues from its save and ends with the LoRA of a run never interrupted', async ({ page }) => {
  const status = page.getByTestId('run-status');
  await setUp(page);

  // Paused after step 3 or 4 (so that it cannot end first) and reloaded once its save at step 2 or 4 is kept.
  await page.getByRole('button', { name: 'Start training' }).click();
  await expect(page.getByTestId('kept-images')).toContainText('2 images of the last run');
  await expect(page.getByTestId('step-counter')).toContainText('step 3 /', { timeout: 10 * 60_000 });
  await page.getByRole('button', { name: 'Pause' }).click();
  await expect(status).toHaveAttribute('data-phase', 'paused', { timeout: 5 * 60_000 });
  await expect(page.getByTestId('recovery-kept')).toContainText(/step [24]/);
  const save2 = await download(page, 'save-2');

  // A second tab of the page can neither start nor continue a run while this one's is active (paused counts).
  const other = await page.context().newPage();
  await other.goto('/');
  await expect(other.getByTestId('other-tab')).toContainText('A run is already training in another tab of this page (“recovered-lora”, saved at step');
  await expect(other.getByTestId('recovery')).toHaveCount(0);
  await other.getByRole('button', { name: 'Start training' }).click();
  await expect(other.getByTestId('run-status')).toContainText('A run is already training in another tab of this page: this tab can start one once it ends there');
  await other.close();

  const prompts: string[] = [];
  page.on('dialog', (d) => (prompts.push(d.type()), void d.accept()));
  await page.reload();
  // The leave-page prompt stays: the reload asked first.
  expect(prompts).toEqual(['beforeunload']);

  // Nothing in memory survived; the offer names the kept step, the images are listed with the way to delete them.
  await expect(page.getByTestId('dataset-count')).toContainText('0 images');
  const offer = page.getByTestId('recovery');
  await expect(offer).toContainText(/Run “recovered-lora” on tiny demo model did not finish: it was saved at step [24] of 6/);
  await expect(offer).toContainText('as if it had never stopped');
  await expect(page.getByTestId('kept-images')).toContainText('Delete the kept images');
  const step = Number(/from step (\d)/.exec((await offer.getByRole('button').first().textContent())!)![1]);
  // The saves list came back from OPFS: the same bytes to download.
  await expect(page.getByTestId('saves-line')).toContainText(`step ${step}`);
  expect((await download(page, 'save-2')).equals(save2), 'the save of step 2 after the reload').toBe(true);

  // One click: model, images and settings come back, and the run goes on from the kept step to the end.
  await offer.getByRole('button', { name: `Continue the run from step ${step}` }).click();
  await expect(page.getByTestId('dataset-count')).toContainText('2 images');
  // The worker took the kept bytes as a run-state file, not as a plain LoRA (its note stays in the run's log).
  await expect(page.getByTestId('run-log')).toContainText(`Continuing the run from step ${step} of 6 (its optimizer state, learning-rate schedule and random streams as they were)`, { timeout: 5 * 60_000 });
  await expect(status).toHaveAttribute('data-phase', 'done', { timeout: 10 * 60_000 });
  await expect(status).toContainText(FINISHED);
  await expect(page.getByTestId('step-counter')).toContainText('step 6 / 6');
  // The chart holds the steps before the reload (kept with the save) and those after: one point each.
  await expect(page.getByTestId('loss-chart')).toHaveAttribute('data-points', '6');
  // The saves from before the reload stay in the list beside the later ones.
  await expect(page.getByTestId('saves-line')).toContainText('3 saves kept');
  const continued = tensors(await download(page));
  // A finished run leaves nothing to continue, and its kept images are deleted.
  await expect(page.getByTestId('recovery')).toHaveCount(0);
  await expect(page.getByTestId('kept-images')).toHaveCount(0);

  // The reference: the same settings and images, 6 steps straight (on the same worker: its kernels are compiled).
  await page.getByRole('button', { name: 'Start training' }).click();
  await expect(status).toHaveText(FINISHED, { timeout: 10 * 60_000 });
  const straight = tensors(await download(page));
  expect([...continued.keys()]).toEqual([...straight.keys()]);
  for (const [k, t] of straight) {
    const c = continued.get(k)!;
    expect([c.dtype, c.shape], k).toEqual([t.dtype, t.shape]);
    expect(c.data.equals(t.data), `${k}: the continued run's bytes equal the uninterrupted run's`).toBe(true);
  }
});
