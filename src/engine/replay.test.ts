// Recorded plans on a real device: two agreeing recordings replay with new inputs and seeds bit for bit as the ops themselves; a baked per-step uniform, an undeclared upload or a held scratch buffer refuses the plan with its reason.
import { beforeAll, expect, it } from 'vitest';
import type { GpuBackend } from './backend.js';
import { add, scale } from './index.js';
import { makePlan, type StepValues } from './replay.js';
import { empty, keep, scope, tensor, type Tensor } from './tensor.js';
import { testBackend } from './testing/gpu.js';

let b: GpuBackend;
beforeAll(async () => {
  b = await testBackend();
});

const N = 64;
const data = (seed: number) => Float32Array.from({ length: N }, (_, i) => Math.sin(seed * 7.1 + i * 0.37) * 3);

/** The work: 2k·(x + x) + seed word uploaded (a stand-in for a dropout seed), read back. */
function work(x: Float32Array, k: number, seed: number): Promise<Float32Array>[] {
  const [y, s] = scope(() => {
    const t = tensor(b, x, [N]);
    const w = empty(b, [1]);
    b.write(w.storage, w.offset, Uint32Array.of(seed));
    return [keep(scale(add(t, t), k)), keep(w)] as Tensor[];
  });
  const reads = [y!.read(), s!.read()];
  y!.dispose();
  s!.dispose();
  return reads;
}

const values = (x: Float32Array, seed: number): StepValues => ({ inputs: new Map([['x', [x]]]), words: new Map([['seed', seed]]) });

/** Record `work` with these values. */
function record(x: Float32Array, k: number, seed: number, declared = values(x, seed)) {
  b.startRecording(declared);
  const reads = work(x, k, seed);
  return { rec: b.stopRecording(), reads };
}

it('replays a plan with new inputs and words, equal to the ops bit for bit', async () => {
  const r1 = record(data(1), 2, 11);
  const r2 = record(data(2), 2, 12);
  await Promise.all([...r1.reads, ...r2.reads]);
  const plan = makePlan(r1.rec, r2.rec);
  if (typeof plan === 'string') throw new Error(plan);
  const v = values(data(3), 13);
  expect(b.replayRefusal(plan, v)).toBeNull();
  const replayed = await Promise.all(b.replay(plan, v));
  const direct = await Promise.all(work(data(3), 2, 13));
  expect(new Float32Array(replayed[0]!)).toEqual(direct[0]);
  // Bit for bit: the bytes, not the values (toEqual counts -0 and 0 as equal, and NaN as NaN).
  expect(new Uint8Array(replayed[0]!)).toEqual(new Uint8Array(direct[0]!.buffer));
  expect(new Uint32Array(replayed[1]!)[0]).toBe(13);
  // A scratch buffer held by someone else invalidates the plan.
  const held = Array.from({ length: 4 }, () => empty(b, [N]));
  expect(b.replayRefusal(plan, v)).toMatch(/scratch buffer/);
  for (const h of held) h.dispose();
  expect(b.replayRefusal(plan, v)).toBeNull();
});

it('refuses recordings that differ in a baked uniform or an undeclared upload', async () => {
  const a = record(data(1), 2, 11);
  const c = record(data(2), 3, 12);
  expect(makePlan(a.rec, c.rec)).toMatch(/uniform word \d+ differs/);
  // The input not declared: its upload differs between the steps.
  const none: StepValues = { inputs: new Map(), words: new Map([['seed', 0]]) };
  const d = record(data(1), 2, 11, { ...none, words: new Map([['seed', 11]]) });
  const e = record(data(2), 2, 12, { ...none, words: new Map([['seed', 12]]) });
  expect(makePlan(d.rec, e.rec)).toMatch(/upload differs between the steps and is no declared input/);
  // Declared, but not uploaded as declared.
  const f = record(data(1), 2, 11, values(data(5), 11));
  expect(f.rec.problem).toMatch(/declared input x was uploaded 0 of 1 times/);
  await Promise.all([a, c, d, e, f].flatMap((r) => r.reads));
});
