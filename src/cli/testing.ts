// Test helpers for the command-line tests: `lorasmith` (src/cli/main.ts through tsx) run as a separate process, as a user runs it.
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../training/testing.js';

export { ROOT };

const run = promisify(execFile);
const MAIN = ['--import', 'tsx', join(ROOT, 'src/cli/main.ts')];

/** Run the CLI to its end: its exit code and its stdout and stderr together. */
export async function cli(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run(process.execPath, [...MAIN, ...args], { cwd: ROOT, env: process.env, maxBuffer: 64 << 20 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout + x.stderr };
  }
}

/** Run until the output matches `until`, then stop the process (for checks that need no training). */
export function cliUntil(args: string[], until: RegExp): Promise<string> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [...MAIN, ...args], { cwd: ROOT, env: process.env });
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
