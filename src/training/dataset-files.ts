// A set of image files as kohya users lay them out: `N_concept` folders (N repeats), captions paired by path, and what is skipped.
//
// Shared by the page (dropped files, folders, zips) and the command line (an image folder), so both
// read the same files the same way. Paths are '/'-separated and relative to the set's root; a path
// is an image's identity, so `10_cat/1.png` and `5_coffee/1.png` are two images with two captions.
//
// Repeats: kohya's folder prefix IS the repeat count, `train/10_cat/x.png` is drawn 10 times an
// epoch whatever the Repeats setting; images not directly in an `N_` folder use the setting.

/** One file of a set: its path inside the set and its size in bytes. */
export interface SetFile {
  path: string;
  size: number;
}

/** A file left out of the dataset and why; shown as `path: reason`, once per path. */
export interface Skip {
  path: string;
  reason: string;
}

/** An image with the caption file beside it (same folder, same stem), and its folder's repeats and concept. */
export interface SetImage {
  path: string;
  /** The path of its `.txt` caption, or null when it has none (or only an empty one). */
  captionPath: string | null;
  /** The folder it is in ('' at the top of the set). */
  folder: string;
  /** From an `N_concept` folder name; null: the Repeats setting applies. */
  repeats: number | null;
  /** The folder name after `N_` (kohya's class tokens), or null. */
  concept: string | null;
}

/** The most repeats a folder prefix may give, as the Repeats setting allows. */
export const MAX_FOLDER_REPEATS = 1000;

const IMAGE = /\.(png|jpe?g|webp)$/i;
// kohya's sd-scripts default to `.caption`; GUIs and most datasets use `.txt`, which wins when both are there.
const CAPTION = /\.(txt|caption)$/i;
const CHECKPOINT = /\.(safetensors|ckpt|pt|pth|bin)$/i;
export const REASON = {
  empty: 'empty file (0 bytes)',
  notData: 'not an image (PNG, JPEG or WebP) or a caption (.txt, .caption)',
  checkpoint: 'a model checkpoint: load it in step 1 (Base model)',
  latentCache: 'a kohya latent cache: not needed, latents are encoded from the image here',
  secondCaption: 'a .caption file beside a .txt of the same name: the .txt is used',
  orphan: 'a caption without its image (no PNG, JPEG or WebP of the same name in its folder)',
} as const;

/** Whether a path names an image the trainer decodes (PNG, JPEG, WebP). */
export const isImagePath = (p: string): boolean => IMAGE.test(p);
/** Whether a path names a sidecar caption (`.txt`, or kohya's `.caption`). */
export const isCaptionPath = (p: string): boolean => CAPTION.test(p);
/** Whether a path names a model checkpoint (read never; it belongs in the model step). */
export const isCheckpointPath = (p: string): boolean => CHECKPOINT.test(p);

/** Hidden files and Finder's resource forks ride along in zips and folders; they are not part of the dataset. */
export const isHiddenPath = (p: string): boolean => /(^|\/)(__MACOSX\/|\.)/.test(p);

/** The folder part of a path ('' for none). */
export const folderOf = (p: string): string => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');

/** The path without its extension: the key that pairs `a/1.png` with `a/1.txt`. */
export const stemPath = (p: string): string => p.replace(/\.[^./]+$/, '');

/**
 * The repeats and concept of a folder named kohya's way (`10_cat`: 10 repeats, concept "cat"); only
 * the image's own folder counts. A prefix above MAX_FOLDER_REPEATS (a year, `2024_summer`) is read
 * as part of a plain name, with a note saying so.
 */
export function kohyaFolder(folder: string): { repeats: number | null; concept: string | null; note?: string } {
  const name = folder.slice(folder.lastIndexOf('/') + 1);
  const m = /^(\d+)_(.+)$/.exec(name);
  if (!m) return { repeats: null, concept: null };
  const n = Number(m[1]);
  if (n < 1 || n > MAX_FOLDER_REPEATS) return { repeats: null, concept: null, note: `folder ${folder}: ${m[1]} is not a repeat count from 1 to ${MAX_FOLDER_REPEATS}, so its images use the Repeats setting` };
  return { repeats: n, concept: m[2]!.trim() || null };
}

/**
 * Sort a set's files: images paired with the caption beside them, each other file skipped once with
 * its reason (empty, a caption without its image, not data, a checkpoint). Hidden files are left out
 * unmentioned. Folder notes say which folder names were not read as repeat counts.
 */
export function pairFiles(files: readonly SetFile[]): { images: SetImage[]; skipped: Skip[]; orphanCaptions: string[]; notes: string[] } {
  const seen = new Set<string>();
  const live = files.filter((f) => !isHiddenPath(f.path) && !f.path.endsWith('/') && !seen.has(f.path) && seen.add(f.path));
  const skipped: Skip[] = [];
  const captions = new Map<string, string>();
  const imageStems = new Set<string>();
  const candidates: SetFile[] = [];
  for (const f of live) {
    if (f.size === 0) skipped.push({ path: f.path, reason: REASON.empty });
    else if (isImagePath(f.path)) {
      candidates.push(f);
      imageStems.add(stemPath(f.path));
    } else if (isCaptionPath(f.path)) {
      const was = captions.get(stemPath(f.path));
      const txt = was && /\.txt$/i.test(was) ? was : f.path;
      if (was) skipped.push({ path: txt === was ? f.path : was, reason: REASON.secondCaption });
      captions.set(stemPath(f.path), was ? txt : f.path);
    } else skipped.push({ path: f.path, reason: isCheckpointPath(f.path) ? REASON.checkpoint : /\.npz$/i.test(f.path) ? REASON.latentCache : REASON.notData });
  }
  const orphanCaptions = [...captions].filter(([s]) => !imageStems.has(s)).map(([, p]) => p);
  const notes = new Map<string, string>();
  const images = candidates.map((f) => {
    const folder = folderOf(f.path);
    const k = kohyaFolder(folder);
    if (k.note) notes.set(folder, k.note);
    return { path: f.path, captionPath: captions.get(stemPath(f.path)) ?? null, folder, repeats: k.repeats, concept: k.concept };
  });
  return { images, skipped, orphanCaptions, notes: [...notes.values()] };
}

/**
 * An image's training caption from its caption file's text (null: none), and the note shown when it
 * has none: kohya trains such an image on its folder's concept, else it trains on the trigger word alone.
 */
export function captionOf(img: Pick<SetImage, 'concept'>, text: string | null): { caption: string; note?: string } {
  const t = text?.trim() ?? '';
  if (t) return { caption: t };
  if (img.concept) return { caption: img.concept, note: `no caption file: captioned "${img.concept}", its folder's concept` };
  return { caption: '', note: 'no caption file: trained on the trigger word alone' };
}

/** The reason an image could not be used, without the file name or "skipped" that a decoder's message may carry. */
export function skipReason(path: string, e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.replace(new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `), '').replace(/ — skipped$/, '');
}

/** Merge skip lists: one entry per path (the latest reason), none for a path now in the dataset. */
export function mergeSkips(lists: readonly (readonly Skip[])[], inDataset: ReadonlySet<string> = new Set()): Skip[] {
  const m = new Map<string, Skip>();
  for (const l of lists) for (const s of l) if (!inDataset.has(s.path)) m.set(s.path, s);
  return [...m.values()];
}

/** One per-folder line of a dataset's summary: images, repeats, images per epoch. */
export interface FolderSummary {
  /** The folder's own name (kohya keys its metadata by it); 'dataset' for files at the top of the set. */
  name: string;
  images: number;
  repeats: number;
  /** Whether the repeats come from the Repeats setting rather than the folder's name. */
  fromSetting: boolean;
}

/** The name kohya keys a file's folder by in its metadata: the folder's own name, 'dataset' at the top of the set. */
export function folderKey(path: string): string {
  const f = folderOf(path);
  return f.slice(f.lastIndexOf('/') + 1) || 'dataset';
}

/**
 * Per-folder counts of a dataset (by each image's path and own repeats), in first-seen order.
 * Folders with the same own name (`a/10_cat`, `b/10_cat`) are counted together, as kohya's metadata keys them.
 */
export function folderSummary(images: readonly { name: string; repeats?: number }[], defaultRepeats: number): FolderSummary[] {
  const m = new Map<string, FolderSummary>();
  for (const i of images) {
    const name = folderKey(i.name);
    const repeats = i.repeats ?? defaultRepeats;
    const key = `${name}\u0000${repeats}`;
    const e = m.get(key) ?? { name, images: 0, repeats, fromSetting: i.repeats === undefined };
    e.images++;
    m.set(key, e);
  }
  return [...m.values()];
}

/** A folder line as the page and the CLI print it: `10_cat: 4 images × 10 repeats = 40 per epoch`. */
export function folderLine(f: FolderSummary): string {
  const n = (k: number, one: string, many: string) => `${k} ${k === 1 ? one : many}`;
  return `${f.name}: ${n(f.images, 'image', 'images')} × ${n(f.repeats, 'repeat', 'repeats')}${f.fromSetting ? ' (the Repeats setting)' : ''} = ${f.images * f.repeats} per epoch`;
}
