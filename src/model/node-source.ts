// A ByteSource over a file path in Node (never imported by the browser bundle).
import { open } from 'node:fs/promises';
import { expectLength, SafetensorsError, type ByteSource } from './byte-source.js';

/** Random access to a local file without reading it whole (checkpoints are gigabytes). */
export async function fileSource(path: string): Promise<ByteSource> {
  const fh = await open(path, 'r');
  const { size } = await fh.stat();
  return {
    name: path,
    size,
    read: async (offset, length) => {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size)
        throw new SafetensorsError('truncated', path, `cannot read bytes ${offset}..${offset + length}: the file has ${size} bytes`);
      const buf = new Uint8Array(length);
      // One read may return less than asked (and a single read is capped near 2 GB), so loop.
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, Math.min(length - done, 2 ** 30), offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return expectLength(path, buf.subarray(0, done), offset, length);
    },
    close: () => fh.close(),
  };
}
