// Recorded step plans (as CUDA graphs): a GPU backend records the commands of a repeated piece of work, and when two recordings agree it re-encodes them without running the code that made them.
//
// A recording holds every dispatch (pipeline, bind group, workgroups, uniform words), upload,
// clear, copy and readback the backend was asked for, in order. Two recordings of consecutive
// steps are compared command by command. They may differ only where the caller said values change
// from step to step (`StepValues`):
// - an upload whose bytes are one of the step's declared `inputs` (matched on the bytes, in order);
// - a uniform word (or a one-word upload) equal to one of the step's declared `words` in both.
// Anything else that differs (a per-step value still baked into a uniform, another buffer, another
// order) refuses the plan, with the reason counted: replay then stays off rather than being wrong.
// A plan binds the pool's buffers as they were: at replay the buffers the work made and freed must
// still be free in the pool (nothing else holds or destroyed them), the others still live.
import type { Binding } from './backend.js';
import type { Kernel } from './kernel.js';

/** What changes from one step to the next, as the caller declares it for each recorded or replayed step. */
export interface StepValues {
  /** Upload payloads by name, in the order the step makes them (several of one name: one per occurrence). */
  inputs: ReadonlyMap<string, readonly ArrayBufferView[]>;
  /** Single u32 words by name (seeds): a uniform word or a one-word upload equal to one of them in both recordings follows it. */
  words: ReadonlyMap<string, number>;
}

/** Where an upload's bytes come from at replay. */
type UploadSource = { kind: 'const'; data: Uint8Array } | { kind: 'input'; name: string; index: number } | { kind: 'word'; name: string };

export type RecordedCommand =
  | { op: 'dispatch'; name: string; pipeline: GPUComputePipeline; group: GPUBindGroup; key: string; uniforms: Uint32Array | null; x: number; y: number; z: number }
  | { op: 'write'; buffer: GPUBuffer; offset: number; data: Uint8Array; input: { name: string; index: number } | null }
  | { op: 'clear'; buffer: GPUBuffer; offset: number; bytes: number }
  | { op: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; bytes: number }
  | { op: 'read'; buffer: GPUBuffer; offset: number; bytes: number };

/** One command of a plan, as replay encodes it. */
export type PlanCommand =
  | { op: 'dispatch'; pipeline: GPUComputePipeline; group: GPUBindGroup; uniforms: Uint32Array | null; terms: readonly (readonly [number, string])[]; x: number; y: number; z: number }
  | { op: 'write'; buffer: GPUBuffer; offset: number; bytes: number; source: UploadSource }
  | { op: 'clear'; buffer: GPUBuffer; offset: number; bytes: number }
  | { op: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; bytes: number }
  | { op: 'read'; buffer: GPUBuffer; offset: number; bytes: number };

/** The pool's view of a buffer, for the recorder and the replay check. */
export interface PoolView {
  isLive(b: GPUBuffer): boolean;
  isFree(b: GPUBuffer): boolean;
  liveBuffers(): number;
}

/** What the backend captures while a recorder is installed. */
export class StepRecording {
  readonly commands: RecordedCommand[] = [];
  /** Dispatches, FLOPs and bytes per kernel name. */
  readonly kernels = new Map<string, { dispatches: number; flops: number; bytes: number }>();
  /** Why this recording cannot become a plan on its own (a declared input never uploaded as declared, buffers kept). */
  problem: string | null = null;
  /** Buffers the work left live at the end (persistent: weights, arenas) and those it made and freed (scratch). */
  live: GPUBuffer[] = [];
  scratch: GPUBuffer[] = [];
  private readonly matched = new Map<string, number>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextId = 1;
  private readonly liveAtStart: number;

  /** The backend's uniform arena, which every bind group with uniforms binds (set at `finish`). */
  uniformArena: GPUBuffer | null = null;

  constructor(readonly values: StepValues, private readonly arenaAtStart: GPUBuffer | null, private readonly pool: PoolView) {
    this.liveAtStart = pool.liveBuffers();
  }

  private id(b: GPUBuffer): number {
    let i = this.bufferIds.get(b);
    if (i === undefined) this.bufferIds.set(b, (i = this.nextId++));
    return i;
  }

  /** Every kernel run, empty dispatches included (the backend's counters count them too). */
  count(k: Kernel): void {
    const e = this.kernels.get(k.name);
    if (e) {
      e.dispatches++;
      e.flops += k.flops;
      e.bytes += k.bytes;
    } else this.kernels.set(k.name, { dispatches: 1, flops: k.flops, bytes: k.bytes });
  }

  dispatch(k: Kernel, pipeline: GPUComputePipeline, group: GPUBindGroup, bindings: readonly Binding[]): void {
    let key = '';
    for (const b of bindings) key += `${this.id(b.storage.buffer as GPUBuffer)}:${b.offset}:${b.size}|`;
    const [x, y, z] = k.workgroups;
    this.commands.push({ op: 'dispatch', name: k.name, pipeline, group, key, uniforms: k.uniforms ? k.uniforms.slice() : null, x, y, z });
  }

  write(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    this.id(buffer);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
    this.commands.push({ op: 'write', buffer, offset, data: bytes, input: this.matchInput(bytes) });
  }

  /** The next unmatched declared input with exactly these bytes, in declaration order. */
  private matchInput(bytes: Uint8Array): { name: string; index: number } | null {
    for (const [name, list] of this.values.inputs) {
      const used = this.matched.get(name) ?? 0;
      const next = list[used];
      if (next && sameBytes(next, bytes)) {
        this.matched.set(name, used + 1);
        return { name, index: used };
      }
    }
    return null;
  }

  clear(buffer: GPUBuffer, offset: number, bytes: number): void {
    this.commands.push({ op: 'clear', buffer, offset, bytes });
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.commands.push({ op: 'copy', src, srcOffset, dst, dstOffset, bytes });
  }

  read(buffer: GPUBuffer, offset: number, bytes: number): void {
    this.commands.push({ op: 'read', buffer, offset, bytes });
  }

  /** Close the recording: classify its buffers and note anything that keeps it from becoming a plan. */
  finish(uniformArena: GPUBuffer | null): void {
    this.uniformArena = uniformArena;
    if (this.arenaAtStart && this.arenaAtStart !== uniformArena) this.problem ??= 'the uniform arena was replaced during the work';
    for (const [name, list] of this.values.inputs) {
      const used = this.matched.get(name) ?? 0;
      if (used !== list.length) this.problem ??= `declared input ${name} was uploaded ${used} of ${list.length} times as declared`;
    }
    for (const c of this.commands) {
      if (c.op !== 'write' || c.input) continue;
      for (const [name, list] of this.values.inputs) if (list.some((v) => sameBytes(v, c.data))) this.problem ??= `another upload has the bytes of declared input ${name}: which is the input is ambiguous`;
    }
    const kept = this.pool.liveBuffers() - this.liveAtStart;
    if (kept !== 0) this.problem ??= `the work ended with ${kept} more live buffers than it started with`;
    const seen = new Set<GPUBuffer>();
    for (const c of this.commands) for (const b of buffersOf(c)) seen.add(b);
    for (const b of seen) {
      if (this.pool.isLive(b)) this.live.push(b);
      else if (this.pool.isFree(b)) this.scratch.push(b);
      else this.problem ??= 'a buffer the work used is no longer in the pool';
    }
  }
}

function buffersOf(c: RecordedCommand | PlanCommand): GPUBuffer[] {
  if (c.op === 'copy') return [c.src, c.dst];
  if (c.op === 'dispatch') return [];
  return [c.buffer];
}

function sameBytes(a: ArrayBufferView, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (let i = 0; i < x.length; i++) if (x[i] !== b[i]) return false;
  return true;
}

/** A plan: what replay encodes, and what must hold for it to be valid. */
export interface StepPlan {
  readonly commands: readonly PlanCommand[];
  readonly live: readonly GPUBuffer[];
  readonly scratch: readonly GPUBuffer[];
  readonly uniformArena: GPUBuffer | null;
  /** Dispatches, FLOPs and bytes per kernel name, for the backend's counters. */
  readonly kernels: ReadonlyMap<string, { readonly dispatches: number; readonly flops: number; readonly bytes: number }>;
  readonly reads: number;
}

/** The declared word equal to `a` in the first step and `b` in the second, if exactly one is. */
function wordName(va: StepValues, vb: StepValues, a: number, b: number): string | null | 'ambiguous' {
  let found: string | null = null;
  for (const [name, x] of va.words) {
    if (x >>> 0 !== a || (vb.words.get(name) ?? NaN) >>> 0 !== b) continue;
    if (found !== null) return 'ambiguous';
    found = name;
  }
  return found;
}

function compareDispatch(i: number, a: Extract<RecordedCommand, { op: 'dispatch' }>, b: Extract<RecordedCommand, { op: 'dispatch' }>, va: StepValues, vb: StepValues): PlanCommand | string {
  if (a.pipeline !== b.pipeline || a.name !== b.name) return `command ${i}: another kernel (${a.name}, then ${b.name})`;
  if (a.key !== b.key) return `command ${i} (${a.name}): other buffers bound`;
  if (a.x !== b.x || a.y !== b.y || a.z !== b.z) return `command ${i} (${a.name}): other workgroup counts`;
  const terms: [number, string][] = [];
  const ua = a.uniforms, ub = b.uniforms;
  if ((ua === null) !== (ub === null) || (ua && ub && ua.length !== ub.length)) return `command ${i} (${a.name}): other uniforms`;
  if (ua && ub) {
    for (let w = 0; w < ua.length; w++) {
      if (ua[w] === ub[w]) continue;
      const name = wordName(va, vb, ua[w]!, ub[w]!);
      if (name === 'ambiguous') return `command ${i} (${a.name}): uniform word ${w} matches several declared words`;
      if (name === null) return `command ${i} (${a.name}): uniform word ${w} differs (${ua[w]} then ${ub[w]}), a per-step value baked into a uniform`;
      terms.push([w, name]);
    }
  }
  return { op: 'dispatch', pipeline: b.pipeline, group: b.group, uniforms: ub, terms, x: b.x, y: b.y, z: b.z };
}

function compareWrite(i: number, a: Extract<RecordedCommand, { op: 'write' }>, b: Extract<RecordedCommand, { op: 'write' }>, va: StepValues, vb: StepValues): PlanCommand | string {
  if (a.buffer !== b.buffer || a.offset !== b.offset || a.data.length !== b.data.length) return `command ${i}: an upload to another place`;
  const base = { op: 'write' as const, buffer: b.buffer, offset: b.offset, bytes: b.data.length };
  if (a.input || b.input) {
    if (!a.input || !b.input || a.input.name !== b.input.name || a.input.index !== b.input.index) return `command ${i}: an upload matched declared inputs differently in the two steps`;
    return { ...base, source: { kind: 'input', ...b.input } };
  }
  if (sameBytes(a.data, b.data)) return { ...base, source: { kind: 'const', data: b.data } };
  if (a.data.length === 4) {
    const wa = new Uint32Array(a.data.buffer)[0]!, wb = new Uint32Array(b.data.buffer)[0]!;
    const name = wordName(va, vb, wa, wb);
    if (typeof name === 'string' && name !== 'ambiguous') return { ...base, source: { kind: 'word', name } };
  }
  return `command ${i}: an upload differs between the steps and is no declared input`;
}

function sameCommand(a: RecordedCommand, b: RecordedCommand): boolean {
  if (a.op === 'clear' && b.op === 'clear') return a.buffer === b.buffer && a.offset === b.offset && a.bytes === b.bytes;
  if (a.op === 'read' && b.op === 'read') return a.buffer === b.buffer && a.offset === b.offset && a.bytes === b.bytes;
  if (a.op === 'copy' && b.op === 'copy') return a.src === b.src && a.dst === b.dst && a.srcOffset === b.srcOffset && a.dstOffset === b.dstOffset && a.bytes === b.bytes;
  return false;
}

/**
 * The plan two recordings of consecutive steps make, or why they make none: every command the same
 * but for declared inputs and words (see the file's head), the same buffers, and the second
 * recording sound (every declared input uploaded, no buffer kept).
 */
export function makePlan(a: StepRecording, b: StepRecording): StepPlan | string {
  if (b.problem) return b.problem;
  if (a.uniformArena !== b.uniformArena) return 'the uniform arena was replaced between the steps';
  if (a.commands.length !== b.commands.length) return `the steps made ${a.commands.length} and ${b.commands.length} commands`;
  const commands: PlanCommand[] = [];
  let reads = 0;
  for (let i = 0; i < b.commands.length; i++) {
    const x = a.commands[i]!, y = b.commands[i]!;
    if (x.op !== y.op) return `command ${i}: ${x.op} then ${y.op}`;
    let c: PlanCommand | string;
    if (x.op === 'dispatch' && y.op === 'dispatch') {
      c = compareDispatch(i, x, y, a.values, b.values);
    } else if (x.op === 'write' && y.op === 'write') c = compareWrite(i, x, y, a.values, b.values);
    else c = sameCommand(x, y) ? (y as PlanCommand) : `command ${i}: another ${y.op}`;
    if (typeof c === 'string') return c;
    if (c.op === 'read') reads++;
    commands.push(c);
  }
  return { commands, live: b.live, scratch: b.scratch, uniformArena: b.uniformArena, kernels: b.kernels, reads };
}

/** Why a plan cannot replay now (its buffers moved on, an input is missing), or null when it can. */
export function planInvalid(plan: StepPlan, values: StepValues, pool: PoolView, uniformArena: GPUBuffer | null): string | null {
  if (plan.uniformArena !== uniformArena) return 'the uniform arena was replaced';
  for (const b of plan.live) if (!pool.isLive(b)) return 'a buffer the plan reads is no longer live';
  for (const b of plan.scratch) if (!pool.isFree(b)) return 'a scratch buffer of the plan is held or gone';
  for (const c of plan.commands) {
    if (c.op === 'write' && c.source.kind === 'input') {
      const v = values.inputs.get(c.source.name)?.[c.source.index];
      if (!v || v.byteLength !== c.bytes) return `input ${c.source.name} #${c.source.index} is missing or of another size`;
    } else if (c.op === 'write' && c.source.kind === 'word' && !values.words.has(c.source.name)) return `word ${c.source.name} is missing`;
    else if (c.op === 'dispatch') for (const [, name] of c.terms) if (!values.words.has(name)) return `word ${name} is missing`;
  }
  return null;
}

/** The bytes an upload of a plan writes this step. */
export function uploadBytes(c: Extract<PlanCommand, { op: 'write' }>, values: StepValues): ArrayBufferView {
  const s = c.source;
  if (s.kind === 'const') return s.data;
  if (s.kind === 'input') return values.inputs.get(s.name)![s.index]!;
  return Uint32Array.of(values.words.get(s.name)! >>> 0);
}

/** Counters of a replaying caller: steps replayed and recorded, and the reasons replay was refused or dropped. */
export class ReplayCounters {
  replayed = 0;
  recorded = 0;
  readonly refused = new Map<string, number>();

  refuse(reason: string): void {
    this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1);
  }
}
