// The dropped images decoded in the worker: training items, the report the page lists (sizes, what was skipped), bucket counts.
import { bucketCounts, trainingBuckets } from '../training/buckets.js';
import type { RgbaImage } from '../training/images.js';
import { REASON, skipReason } from '../training/dataset-files.js';
import type { TrainItem } from '../training/data.js';
import type { BucketCount, BucketSettings, DatasetFile, DatasetReport } from '../protocol/index.js';

/** Decode every file with `decode` (the browser's in the worker); one that fails is skipped with the reason, the rest train. */
export async function decodeDataset(files: DatasetFile[], decode: (name: string, bytes: ArrayBuffer) => Promise<RgbaImage>): Promise<{ items: TrainItem[]; report: DatasetReport }> {
  const report: DatasetReport = { images: [], skipped: [] };
  const items: TrainItem[] = [];
  for (const f of files) {
    try {
      if (f.bytes.byteLength === 0) throw new Error(REASON.empty);
      const image = await decode(f.name, f.bytes);
      items.push({ name: f.name, image, caption: f.caption, ...(f.repeats !== undefined ? { repeats: f.repeats } : {}), ...(f.validation ? { validation: true } : {}) });
      report.images.push({ name: f.name, width: image.width, height: image.height });
    } catch (e) {
      report.skipped.push({ name: f.name, reason: skipReason(f.name, e) });
    }
  }
  return { items, report };
}

/** The buckets these images train in with these settings (the trainer's own grid and choice); null while the settings make none. */
export function datasetBuckets(items: readonly TrainItem[], settings: BucketSettings): BucketCount[] | null {
  try {
    return bucketCounts(items.map((i) => i.image), trainingBuckets(settings));
  } catch {
    return null; // settings mid-edit make no grid (the form shows the error)
  }
}
