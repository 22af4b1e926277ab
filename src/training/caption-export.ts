// Captions as kohya reads them: one `.txt` beside each image (same path, same stem), packed in a zip for download.
import { zipSync, strToU8 } from 'fflate';
import { stemPath } from './dataset-files.js';

/** The caption file's path for an image path: `train/10_cat/1.png` → `train/10_cat/1.txt`. */
export const captionPath = (imagePath: string): string => `${stemPath(imagePath)}.txt`;

/**
 * A zip of one UTF-8 `.txt` per image, at the image's own path in the dataset, so that unzipping it
 * over the image folder puts each caption beside its image. Two images with the same stem
 * (`a.png`, `a.jpg`) would share a caption file: refused, naming both.
 */
export function captionsZip(entries: readonly { name: string; caption: string }[]): Uint8Array {
  const files: Record<string, Uint8Array> = {};
  const owner = new Map<string, string>();
  for (const e of entries) {
    const path = captionPath(e.name);
    const before = owner.get(path);
    if (before) throw new Error(`${before} and ${e.name} would both be captioned by ${path}: rename one of them (kohya pairs captions by file stem).`);
    owner.set(path, e.name);
    files[path] = strToU8(`${e.caption.trim()}\n`);
  }
  return zipSync(files, { level: 6 });
}
