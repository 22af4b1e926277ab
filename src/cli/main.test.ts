// The command-line trainer as a user runs it: a separate process on Dawn, real files in and out.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { decode as decodePng } from 'fast-png';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const run = promisify(execFile);

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, env: process.env, maxBuffer: 64 << 20 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout + x.stderr };
  }
}

/** Run until the output matches `until`, then stop the process (for checks that need no training). */
function cliUntil(args: string[], until: RegExp): Promise<string> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, env: process.env });
    let out = '';
    const on = (d: Buffer) => {
      out += d.toString();
      if (until.test(out)) p.kill('SIGKILL');
    };
    p.stdout.on('data', on);
    p.stderr.on('data', on);
    p.on('error', rej);
    p.on('close', () => res(out));
  });
}

describe('lorasmith', () => {
  it('inspect lists a checkpoint’s tensors', async () => {
    const r = await cli(['inspect', join(ROOT, 'public/tiny-sd1.safetensors')]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/tensors/);
    expect(r.out).toContain('model.diffusion_model.input_blocks.0.0.weight');
  }, 120_000);

  it('refuses bad settings and empty folders with the reason', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    const bad = await cli(['train', '--model', 'tiny', '--images', join(ROOT, 'public/samples'), '--out', join(dir, 'x.safetensors'), '--batch', '0']);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/batchSize: Batch size must be/);
    const empty = await cli(['train', '--model', 'tiny', '--images', dir, '--out', join(dir, 'x.safetensors')]);
    expect(empty.code).toBe(1);
    expect(empty.out).toContain('no usable images');
  }, 120_000);

  it('trains the tiny model for two steps, saving the LoRA and preview images', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    const out = join(dir, 'cli-lora.safetensors');
    const r = await cli(['train', '--model', 'tiny', '--images', join(ROOT, 'public/samples'), '--out', out, '--steps', '2', '--no-te', '--optimizer', 'lion', '--lr', '1e-4', '--samples', join(dir, 'samples'), '--sample-every', '1', '--sample-steps', '1']);
    expect(r.out).toContain('step 2/2');
    expect(r.code).toBe(0);
    expect(existsSync(out)).toBe(true);
    const bytes = readFileSync(out);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
    expect(header.__metadata__.ss_optimizer).toMatch(/Lion/i);
    const pngs = readdirSync(join(dir, 'samples')).sort();
    expect(pngs).toEqual(['cli-lora-000001.png', 'cli-lora-000002.png']);
    const img = decodePng(readFileSync(join(dir, 'samples', pngs[1]!)));
    expect([img.width, img.height]).toEqual([64, 64]);

    // Resume from that file: the weights load back into the same targets and training goes on.
    const out2 = join(dir, 'cli-lora-more.safetensors');
    const again = await cliUntil(['train', '--model', 'tiny', '--images', join(ROOT, 'public/samples'), '--out', out2, '--steps', '1', '--no-te', '--resume', out, '--sample-steps', '0'], /resuming from .*\(\d+ modules\)|error:/);
    expect(again).toMatch(/resuming from .*\(84 modules\)/);
    // A rank that does not match the file is refused with the reason.
    const wrong = await cli(['train', '--model', 'tiny', '--images', join(ROOT, 'public/samples'), '--out', out2, '--steps', '1', '--no-te', '--resume', out, '--dim', '4']);
    expect(wrong.code).toBe(1);
    expect(wrong.out).toMatch(/error: .*(rank|shape)/i);
  }, 30 * 60_000);
});
