// The Try-it panel on the tiny demo: a dropped kohya LoRA from another trainer rendered beside the base model from one seed, a LyCORIS LoHa in the grid,
// per-step progress, a long render cancelled, PNG downloads with their settings in tEXt chunks, an X/Y grid of LoRAs × strengths, bad files refused.
import { readFileSync } from 'node:fs';
import { expect, test, type Page } from '@playwright/test';
import { decode } from 'fast-png';
import { dropFiles } from './helpers.js';
import { kohyaLora, lohaLora } from './kohya-lora.js';

const unet = 'public/tiny/unet/diffusion_pytorch_model.safetensors';

/** The PNG behind a download link: its pixels and text chunks. */
async function downloadPng(page: Page, testId: string) {
  const [d] = await Promise.all([page.waitForEvent('download'), page.getByTestId(testId).click()]);
  const png = decode(readFileSync((await d.path())!));
  return { name: d.suggestedFilename(), width: png.width, data: Buffer.from(png.data), text: png.text };
}

test('try a dropped kohya LoRA beside the base model, download the PNGs, render an X/Y grid', async ({ page }) => {
  await page.goto('/');
  await page.getByRole('button', { name: 'Use the tiny demo model' }).click();
  await expect(page.getByTestId('model-status')).toContainText('Ready', { timeout: 120_000 });
  const panel = page.getByTestId('try-drop');
  const field = (label: string | RegExp) => panel.getByLabel(label, { exact: true });
  const render = panel.getByRole('button', { name: 'Render base and LoRA' });
  // No run and no file yet: nothing to render with, and the panel says what to do.
  await expect(render).toBeDisabled();
  await expect(page.getByTestId('try-hint')).toHaveText('Train a LoRA (step 4) or drop a kohya LoRA file on this panel to render with it.');

  // Files that are no SD 1.x kohya LoRA are refused by name at the drop.
  const sdxl = Buffer.from(kohyaLora(unet, 2, 0.1, 1).toString('latin1').replaceAll('lora_unet_', 'lora_te1__'), 'latin1');
  await dropFiles(page, 'try-drop', [{ name: 'xl.safetensors', bytes: sdxl }, { name: 'notes.ckpt', bytes: Buffer.from('pickle') }]);
  await expect(page.getByTestId('try-message')).toContainText('xl.safetensors is an SDXL LoRA');
  await expect(page.getByTestId('try-message')).toContainText('notes.ckpt: only .safetensors');

  // Two files of another trainer at rank 3 (ours trains at the network dim), a kohya LoRA and a LyCORIS LoHa: the side-by-side uses the last dropped.
  await dropFiles(page, 'try-drop', [
    { name: 'other-a.safetensors', bytes: kohyaLora(unet, 3, 0.5, 7) },
    { name: 'other-b.safetensors', bytes: lohaLora(unet, 3, 0.5, 8) },
  ]);
  await expect(page.getByTestId('try-message')).toHaveCount(0);
  await expect(page.getByTestId('try-hint')).toHaveCount(0);
  await page.getByTestId('try-lora').selectOption('other-a.safetensors');
  await field('Prompt').fill('a photo of sks cat');
  await field('Negative prompt').fill('blurry');
  await field('Seed').fill('7');
  await field('Steps').fill('2');
  await field('Guidance').fill('5');
  await field('Sampler').selectOption('euler');
  await field(/LoRA strength/).fill('1');

  // Every progress line the page shows, recorded as it changes (not sampled on a timer).
  await page.evaluate(() => {
    const seen: string[] = ((window as unknown as { seen: string[] }).seen = []);
    new MutationObserver(() => {
      const t = document.querySelector('[data-testid="try-progress"]')?.textContent;
      if (t && seen.at(-1) !== t) seen.push(t);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  await render.click();
  await expect(page.getByTestId('try-lora-image')).toBeVisible({ timeout: 5 * 60_000 });
  const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
  expect(seen.some((t) => /step [12] of 2/.test(t)), seen.join(' | ')).toBe(true);
  await expect(page.getByTestId('try-progress')).toHaveCount(0);

  const base = await downloadPng(page, 'try-base-download');
  const lora = await downloadPng(page, 'try-lora-image-download');
  expect(base.width).toBe(64);
  expect(base.name).toBe('base-seed7-strength0.png');
  expect(lora.name).toBe('other-a.safetensors-seed7-strength1.png');
  expect(base.text.parameters).toBe('a photo of sks cat\nNegative prompt: blurry\nSteps: 2, Sampler: Euler, CFG scale: 5, Seed: 7, Size: 64x64, Model: tiny demo model');
  expect(lora.text.parameters).toContain('Seed: 7, Size: 64x64, Model: tiny demo model, Lora: other-a.safetensors, Lora strength: 1');
  expect(JSON.parse(lora.text.lorasmith!)).toMatchObject({ prompt: 'a photo of sks cat', seed: 7, steps: 2, sampler: 'euler', strength: 1, lora: 'other-a.safetensors' });
  // The LoRA changes the image; the base is the model alone.
  expect(lora.data.equals(base.data)).toBe(false);

  // A long render cancelled: the worker stops after the step it is on and says where; the pair shown stays.
  await field('Steps').fill('150');
  await render.click();
  await expect(page.getByTestId('try-progress')).toContainText(/step [1-9]\d* of 150/, { timeout: 2 * 60_000 });
  await page.getByTestId('try-cancel').click();
  await expect(page.getByTestId('try-message')).toHaveText(/^Cancelled at step \d+ of 150, image [12] of 2\.$/, { timeout: 60_000 });
  await expect(page.getByTestId('try-progress')).toHaveCount(0);
  expect((await downloadPng(page, 'try-lora-image-download')).data.equals(lora.data)).toBe(true);
  await field('Steps').fill('2');

  // The grid: both files as columns, strengths 0 and 1 as rows; strength 0 renders once (the base, for every column).
  await field('Grid strengths').fill('0, 1');
  await panel.getByRole('button', { name: /Render X\/Y grid \(2 LoRAs/ }).click();
  await expect(page.getByTestId('try-grid')).toBeVisible({ timeout: 5 * 60_000 });
  await expect(page.getByTestId('try-grid').locator('thead th')).toHaveText(['strength', 'other-a.safetensors', 'other-b.safetensors']);
  const cell = (r: number, c: number) => downloadPng(page, `try-cell-${r}-${c}-download`);
  const [b0, b1, a1, bb1] = [await cell(0, 0), await cell(0, 1), await cell(1, 0), await cell(1, 1)];
  // Same seed and settings give the same pixels in a later call: the grid's base and LoRA-A cells equal the pair's.
  expect(b0.data.equals(base.data)).toBe(true);
  expect(b1.data.equals(base.data)).toBe(true);
  expect(a1.data.equals(lora.data)).toBe(true);
  expect(bb1.data.equals(a1.data)).toBe(false);
  expect(bb1.data.equals(b0.data)).toBe(false); // the LoHa applies (not refused, not a no-op)
  await expect(page.getByTestId('try-notes')).toContainText('other-b.safetensors: a LoHa network (LyCORIS), applied as its merged weights');
  await panel.screenshot({ path: 'docs/tryit.png' });

  // A dropped file can be taken out again: the grid has one column fewer.
  await panel.getByRole('button', { name: 'remove other-b.safetensors' }).click();
  await expect(panel.getByRole('button', { name: /Render X\/Y grid \(1 LoRA / })).toBeVisible();

  // The panel's settings survive a reload; a bad one is named with its fix.
  await page.reload();
  await expect(field('Prompt')).toHaveValue('a photo of sks cat');
  await expect(field('Seed')).toHaveValue('7');
  await expect(field('Grid strengths')).toHaveValue('0, 1');
  await field('Steps').fill('0');
  await expect(page.getByTestId('try-error-steps')).toContainText('Steps must be between 1 and 150 (got 0)');
});
