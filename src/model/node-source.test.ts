// fileSource in Node: tensors read at their offsets, and named errors for short files, missing paths and folders.
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fileSource } from './node-source.js';
import { folderRepo } from './node-repo.js';
import { openSafetensors, writeSafetensors } from './safetensors.js';

describe('fileSource (Node)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lorasmith-st-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads tensors at their offsets from a file on disk', async () => {
    const path = join(dir, 'ok.safetensors');
    writeFileSync(path, writeSafetensors([
      { name: 'a', dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) },
      { name: 'b', dtype: 'F16', shape: [2], data: Float32Array.of(-1, 0.5) },
    ], { note: 'x' }));
    const src = await fileSource(path);
    const f = await openSafetensors(src);
    expect(f.metadata).toEqual({ note: 'x' });
    expect([...(await f.readTensor('b'))]).toEqual([-1, 0.5]);
    expect([...(await f.readTensor('a'))]).toEqual([1, 2]);
    await src.close?.();
  });

  it('a file cut short after its header names the path and the tensor range', async () => {
    const path = join(dir, 'cut.safetensors');
    writeFileSync(path, writeSafetensors([{ name: 'w', dtype: 'F32', shape: [64], data: new Float32Array(64) }]));
    truncateSync(path, 8 + 64 + 100);
    const src = await fileSource(path);
    await expect(openSafetensors(src)).rejects.toThrow(new RegExp(`^${path}: tensor "w" spans data bytes 0\\.\\.256 but the data section has \\d+ bytes`));
    await src.close?.();
  });

  it('a missing file is reported with its path', async () => {
    const path = join(dir, 'nope.safetensors');
    await expect(fileSource(path)).rejects.toThrow(`${path}: no such file (ENOENT): check the path`);
  });

  it('a folder named like a checkpoint is refused by name, not with a bare EISDIR', async () => {
    const path = join(dir, 'x.safetensors');
    mkdirSync(path);
    await expect(fileSource(path)).rejects.toThrow(`${path}: is a folder, not a file`);
  });

  it('a folder without a diffusers config names the missing file and what a diffusers folder holds', async () => {
    const repo = folderRepo(dir);
    await expect(repo.text('unet/config.json')).rejects.toThrow(`${dir}: unet/config.json is missing; a diffusers SD 1.x folder has model_index.json`);
  });
});
