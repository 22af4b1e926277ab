// A ByteSource over a file path in Node (never imported by the browser bundle).
import { open, type FileHandle } from 'node:fs/promises';
import { expectLength, SafetensorsError, type ByteSource } from './byte-source.js';

/** What a failed open or read means for the person who named the file (Node's messages are terse: `EISDIR: illegal operation on a directory, read`). */
function fsProblem(path: string, e: unknown, doing: string): SafetensorsError {
  const code = (e as NodeJS.ErrnoException)?.code;
  const detail =
    code === 'ENOENT' ? 'no such file (ENOENT): check the path'
    : code === 'EACCES' || code === 'EPERM' ? `permission denied (${code}): the file cannot be ${doing}`
    : code === 'EISDIR' ? 'is a folder, not a file'
    : `cannot be ${doing} (${e instanceof Error ? e.message : String(e)})`;
  return new SafetensorsError('open', path, detail);
}

/** Random access to a local file without reading it whole (checkpoints are gigabytes). A folder or a missing file is refused by name. */
export async function fileSource(path: string): Promise<ByteSource> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fsProblem(path, e, 'opened');
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    // Linux opens a directory for reading; only the first read fails, with a bare EISDIR.
    throw new SafetensorsError('open', path, st.isDirectory() ? 'is a folder, not a file' : 'is not a regular file');
  }
  const { size } = st;
  return {
    name: path,
    size,
    read: async (offset, length) => {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size)
        throw new SafetensorsError('truncated', path, `cannot read bytes ${offset}..${offset + length}: the file has ${size} bytes`);
      const buf = new Uint8Array(length);
      // One read may return less than asked (and a single read is capped near 2 GB), so loop.
      let done = 0;
      try {
        while (done < length) {
          const { bytesRead } = await fh.read(buf, done, Math.min(length - done, 2 ** 30), offset + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
      } catch (e) {
        throw fsProblem(path, e, 'read');
      }
      return expectLength(path, buf.subarray(0, done), offset, length);
    },
    close: () => fh.close(),
  };
}
