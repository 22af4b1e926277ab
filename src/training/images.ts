// Turning decoded images into training tensors: bucket, resize to cover, crop, flip, scale to [-1, 1] (CHW).
import { assignBucket, coverCrop, type Bucket } from './buckets.js';

/** A decoded image: RGBA bytes, alpha not yet flattened. */
export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8ClampedArray | Uint8Array;
}

/** An image that failed to decode or is unsupported, reported by name and skipped. */
export class ImageDecodeError extends Error {
  constructor(readonly file: string, reason: string) {
    super(`${file}: ${reason} — skipped`);
    this.name = 'ImageDecodeError';
  }
}

/**
 * Bilinear resize to cover `bucket`, crop, optional horizontal flip, alpha flattened onto white,
 * values mapped to [-1, 1]; returns [3, height, width] floats.
 */
export function toTensorData(img: RgbaImage, bucket: Bucket, flip = false): Float32Array {
  const { scale, x: cx, y: cy } = coverCrop(img.width, img.height, bucket);
  const W = bucket.width;
  const H = bucket.height;
  const out = new Float32Array(3 * W * H);
  const px = (x: number, y: number, c: number) => {
    const i = (Math.min(img.height - 1, Math.max(0, y)) * img.width + Math.min(img.width - 1, Math.max(0, x))) * 4;
    const a = img.data[i + 3]! / 255;
    return (img.data[i + c]! / 255) * a + (1 - a);
  };
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const sx = ((flip ? W - 1 - x : x) + cx + 0.5) / scale - 0.5;
      const sy = (y + cy + 0.5) / scale - 0.5;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      for (let c = 0; c < 3; c++) {
        const v = px(x0, y0, c) * (1 - fx) * (1 - fy) + px(x0 + 1, y0, c) * fx * (1 - fy) + px(x0, y0 + 1, c) * (1 - fx) * fy + px(x0 + 1, y0 + 1, c) * fx * fy;
        out[(c * H + y) * W + x] = v * 2 - 1;
      }
    }
  return out;
}

export { assignBucket };
