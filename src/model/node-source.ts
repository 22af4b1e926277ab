// A ByteSource over a file path in Node (never imported by the browser bundle).
import { open } from 'node:fs/promises';
import type { ByteSource } from './safetensors.js';

/** Random access to a local file without reading it whole (checkpoints are gigabytes). */
export async function fileSource(path: string): Promise<ByteSource> {
  const fh = await open(path, 'r');
  const { size } = await fh.stat();
  return {
    name: path,
    size,
    read: async (offset, length) => {
      const buf = new Uint8Array(length);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      return buf.subarray(0, bytesRead);
    },
    close: () => fh.close(),
  };
}
