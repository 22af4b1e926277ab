// `lorasmith inspect` (and `train --model`) on damaged or missing files, as a user runs it (issue 11): a non-zero exit
// and one `error:` line naming the file and the problem, never a stack trace, a bare EISDIR or megabytes of quoted header.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((res) => {
    execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, maxBuffer: 64 << 20 }, (e, stdout, stderr) =>
      res({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr }),
    );
  });
}

/** Length field + header text (+ padding spaces) + data, the length field overridable. */
function file(header: string, data: Uint8Array, length?: bigint): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(length ?? BigInt(Buffer.byteLength(header)));
  return Buffer.concat([len, Buffer.from(header), data]);
}

describe('lorasmith inspect on damaged files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'inspect-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const w = '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
  const cases: [string, () => void, RegExp][] = [
    ['short.safetensors', () => writeFileSync(join(dir, 'short.safetensors'), file(w + '    ', new Uint8Array(8), BigInt(w.length + 1))), /the tensors end at data byte 8 but the data section has 11 bytes/],
    ['deep.safetensors', () => writeFileSync(join(dir, 'deep.safetensors'), file(`{"w":{"dtype":"F32","shape":${'['.repeat(300_000)}${']'.repeat(300_000)},"data_offsets":[0,8]}}`, new Uint8Array(8))), /nests arrays or objects more than 8 levels deep/],
    ['dtype.safetensors', () => writeFileSync(join(dir, 'dtype.safetensors'), file(`{"w":{"dtype":"${'X'.repeat(10 * 2 ** 20)}","shape":[2],"data_offsets":[0,8]}}`, new Uint8Array(8))), /tensor "w" has unknown dtype "X+…"/],
    ['u64.safetensors', () => writeFileSync(join(dir, 'u64.safetensors'), file('{}', new Uint8Array(0), 2n ** 64n - 1n)), /header length field says 18446744073709551615 bytes/],
    ['folder.safetensors', () => mkdirSync(join(dir, 'folder.safetensors')), /is a folder, not a file/],
    ['missing.safetensors', () => undefined, /no such file \(ENOENT\)/],
  ];

  it(`exits 1 with one named error line for ${cases.length} damaged inputs`, async () => {
    for (const [, make] of cases) make();
    // Side by side: each run is a separate process (a second or two to start).
    const runs = await Promise.all(cases.map(([name]) => cli(['inspect', join(dir, name)])));
    runs.forEach((r, i) => {
      const [name, , want] = cases[i]!;
      expect(r.code, name).toBe(1);
      expect(r.out, name).toBe('');
      const lines = r.err.split('\n').filter((l) => l.trim());
      expect(lines, name).toHaveLength(1);
      expect(lines[0]!.startsWith(`error: ${join(dir, name)}: `), lines[0]!.slice(0, 200)).toBe(true);
      expect(lines[0], name).toMatch(want);
      expect(lines[0]!.length, name).toBeLessThan(400);
      expect(r.err, name).not.toMatch(/\n\s+at |RangeError|TypeError|EISDIR/);
    });
  }, 120_000);

  it('train names a --model path that does not exist', async () => {
    const model = join(dir, 'nope.safetensors');
    const r = await cli(['train', '--model', model, '--images', join(ROOT, 'public/samples'), '--out', join(dir, 'out.safetensors'), '--steps', '1']);
    expect(r.code).toBe(1);
    expect(r.err.trim().split('\n').at(-1)).toBe(`error: ${model}: no such file or folder (--model takes tiny, a diffusers folder or a .safetensors file)`);
  }, 120_000);
});
