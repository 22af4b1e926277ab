// Image decoding in the browser's worker (createImageBitmap + OffscreenCanvas); Node decodes with decode-node.ts instead.
// The header is checked first, as in Node (image-header.ts): only PNG, JPEG and WebP, no zero size, at most
// MAX_IMAGE_PIXELS, so the browser is never asked to allocate a bomb's declared size.
import { FORMAT_NAME, readImageHeader } from './image-header.js';
import { ImageDecodeError, type RgbaImage } from './images.js';

/** Decode with the browser (PNG, JPEG, WebP; EXIF orientation honoured; alpha kept for flattening). */
export async function decodeImageBrowser(name: string, bytes: ArrayBuffer): Promise<RgbaImage> {
  const header = readImageHeader(name, new Uint8Array(bytes));
  let bmp: ImageBitmap;
  try {
    bmp = await createImageBitmap(new Blob([bytes]), { imageOrientation: 'from-image' });
  } catch {
    throw new ImageDecodeError(name, `corrupt or truncated ${FORMAT_NAME[header.format]} data (the browser cannot decode it)`);
  }
  if (bmp.width < 1 || bmp.height < 1) {
    bmp.close();
    throw new ImageDecodeError(name, `the browser decoded a ${bmp.width}x${bmp.height} image (no pixels), nothing to train on`);
  }
  const c = new OffscreenCanvas(bmp.width, bmp.height);
  const ctx = c.getContext('2d')!;
  ctx.drawImage(bmp, 0, 0);
  const d = ctx.getImageData(0, 0, bmp.width, bmp.height);
  bmp.close();
  return { width: d.width, height: d.height, data: d.data };
}
