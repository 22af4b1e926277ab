// The command line's image folder: walked with its subfolders (kohya's `N_concept` folders), read as the page reads a dropped set.
import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { captionOf, folderLine, folderSummary, isHiddenPath, pairFiles, REASON, skipReason, type SetFile, type Skip } from '../training/dataset-files.js';
import { decodeImageNode } from '../training/decode-node.js';
import { ImageDecodeError } from '../training/images.js';
import type { TrainItem } from '../training/data.js';

/** Why a directory entry could not be read, in words (a dangling link is the usual ENOENT). */
function unreadable(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (code === 'ENOENT') return 'unreadable: it does not exist (a link to a file that is gone?)';
  if (code === 'EACCES' || code === 'EPERM') return 'unreadable: permission denied';
  if (code === 'ELOOP') return 'unreadable: a loop of links';
  return `unreadable (${code ?? (e instanceof Error ? e.message : String(e))})`;
}

/** Every file under `dir` by '/'-separated path, subfolders walked (each real folder once); entries that cannot be read are skips. */
function walk(dir: string): { files: SetFile[]; skipped: Skip[] } {
  const files: SetFile[] = [];
  const skipped: Skip[] = [];
  const visited = new Set<string>();
  const visit = (abs: string, rel: string) => {
    visited.add(realpathSync(abs));
    for (const name of readdirSync(abs).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      if (isHiddenPath(path)) continue;
      try {
        const st = statSync(join(abs, name)); // follows links
        if (st.isDirectory()) {
          if (!visited.has(realpathSync(join(abs, name)))) visit(join(abs, name), path);
        } else if (st.isFile()) files.push({ path, size: st.size });
        else skipped.push({ path, reason: 'not a regular file' });
      } catch (e) {
        skipped.push({ path, reason: unreadable(e) });
      }
    }
  };
  visit(dir, '');
  return { files, skipped };
}

/**
 * The images of a folder with their captions (same folder, same stem) and their folders' repeats
 * (`10_cat/`: 10 an epoch; other images `defaultRepeats`), named by path; `messages` names each skipped file once (`skipped path: reason`),
 * images without captions, and the per-folder repeats when a folder sets them.
 */
export function readImages(dir: string, defaultRepeats: number): { items: TrainItem[]; messages: string[] } {
  const walked = walk(dir);
  const set = pairFiles(walked.files);
  const skipped: Skip[] = [...walked.skipped, ...set.skipped, ...set.orphanCaptions.map((path) => ({ path, reason: REASON.orphan }))];
  const uncaptioned: string[] = [];
  const items: TrainItem[] = [];
  for (const img of set.images) {
    let text: string | null = null;
    if (img.captionPath) {
      try {
        text = readFileSync(join(dir, img.captionPath), 'utf8');
      } catch (e) {
        skipped.push({ path: img.captionPath, reason: unreadable(e) });
      }
    }
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(join(dir, img.path));
    } catch (e) {
      skipped.push({ path: img.path, reason: unreadable(e) });
      continue;
    }
    try {
      const image = decodeImageNode(img.path, bytes);
      const c = captionOf(img, text);
      if (c.note) uncaptioned.push(`${img.path} (${c.note.replace(/^no caption file: /, '')})`);
      items.push({ name: img.path, image, caption: c.caption, ...(img.repeats !== null ? { repeats: img.repeats } : {}) });
    } catch (e) {
      if (!(e instanceof ImageDecodeError)) throw e;
      skipped.push({ path: img.path, reason: skipReason(img.path, e) });
    }
  }
  const messages = skipped.map((s) => `skipped ${s.path}: ${s.reason}`);
  if (uncaptioned.length) messages.push(`no caption file for ${uncaptioned.length} ${uncaptioned.length === 1 ? 'image' : 'images'}: ${uncaptioned.slice(0, 10).join(', ')}${uncaptioned.length > 10 ? `, and ${uncaptioned.length - 10} more` : ''}`);
  messages.push(...set.notes);
  if (items.some((i) => i.repeats !== undefined)) messages.push(...folderSummary(items, defaultRepeats).map(folderLine));
  return { items, messages };
}
