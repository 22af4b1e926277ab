// Image decoding in the browser's worker (createImageBitmap + OffscreenCanvas); Node decodes with decode-node.ts instead.
import { ImageDecodeError, type RgbaImage } from './images.js';

/** Decode with the browser (PNG, JPEG, WebP; EXIF orientation honoured; alpha kept for flattening). */
export async function decodeImageBrowser(name: string, bytes: ArrayBuffer): Promise<RgbaImage> {
  let bmp: ImageBitmap;
  try {
    bmp = await createImageBitmap(new Blob([bytes]), { imageOrientation: 'from-image' });
  } catch {
    throw new ImageDecodeError(name, 'not an image this browser can decode, or the file is corrupt');
  }
  const c = new OffscreenCanvas(bmp.width, bmp.height);
  const ctx = c.getContext('2d')!;
  ctx.drawImage(bmp, 0, 0);
  const d = ctx.getImageData(0, 0, bmp.width, bmp.height);
  bmp.close();
  return { width: d.width, height: d.height, data: d.data };
}
