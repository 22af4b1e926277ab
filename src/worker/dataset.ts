// The dropped images decoded in the worker: training items, and the report the page lists (sizes, buckets, what was skipped).
import { assignBucket, makeBuckets } from '../training/buckets.js';
import { decodeImageBrowser } from '../training/decode-browser.js';
import { REASON, skipReason } from '../training/dataset-files.js';
import type { TrainItem } from '../training/trainer.js';
import type { DatasetFile, DatasetReport } from '../protocol/index.js';

/** Decode every file; one that fails is skipped with the reason, the rest train. Buckets in the report are at 512. */
export async function decodeDataset(files: DatasetFile[]): Promise<{ items: TrainItem[]; report: DatasetReport }> {
  const report: DatasetReport = { images: [], skipped: [] };
  const items: TrainItem[] = [];
  const buckets = makeBuckets({ resolution: 512, step: 64, min: 320, max: 768, maxAspect: 2 });
  for (const f of files) {
    try {
      if (f.bytes.byteLength === 0) throw new Error(REASON.empty);
      const image = await decodeImageBrowser(f.name, f.bytes);
      items.push({ name: f.name, image, caption: f.caption, ...(f.repeats !== undefined ? { repeats: f.repeats } : {}) });
      const b = assignBucket(image.width, image.height, buckets);
      report.images.push({ name: f.name, width: image.width, height: image.height, bucket: `${b.width}x${b.height}` });
    } catch (e) {
      report.skipped.push({ name: f.name, reason: skipReason(f.name, e) });
    }
  }
  return { items, report };
}
