// Backends run kernels: the GPU backend encodes dispatches into command buffers; the meta backend only counts.
import { formatBytes } from './bytes.js';
import { MAX_UNIFORM_WORDS, type Kernel } from './kernel.js';
import { BufferPool, DEFAULT_CACHE_LIMIT, STORAGE_USAGE, type PoolStats } from './pool.js';
import { PipelineCache, type CompiledPipeline } from './pipelines.js';
import { planInvalid, uploadBytes, StepRecording, type PlanCommand, type StepPlan, type StepValues } from './replay.js';
import type { SubgroupSizes } from './subgroups.js';

/** A pooled allocation. `buffer` is a GPUBuffer on the GPU backend and a placeholder on the meta device. */
export interface Storage {
  readonly id: number;
  readonly bytes: number;
  readonly buffer: GPUBuffer | MetaBuffer;
  /** Tensors that reference this storage; it returns to the pool at zero. */
  refs: number;
}

/** What a dispatch binds: a storage and a byte range of it. */
export interface Binding {
  storage: Storage;
  offset: number;
  size: number;
}

/** Counters every backend keeps; the meta device's are the whole point of it. */
export interface RunStats {
  dispatches: number;
  flops: number;
  bytes: number;
  submits: number;
  /** FLOPs and dispatches per kernel name. */
  byKernel: Map<string, { dispatches: number; flops: number; bytes: number }>;
}

/** The operations tensors need from a device. */
export interface Backend {
  readonly kind: 'gpu' | 'meta';
  alloc(bytes: number): Storage;
  release(s: Storage): void;
  run(k: Kernel, bindings: Binding[]): void;
  /** Upload bytes into a storage at a byte offset. Pending work is submitted first so ordering holds. */
  write(s: Storage, offset: number, data: ArrayBufferView): void;
  /** Read a byte range back; resolves once the GPU has finished everything encoded before it. */
  read(s: Storage, offset: number, bytes: number): Promise<ArrayBuffer>;
  /** Fill a byte range with zeros. */
  clear(s: Storage, offset: number, bytes: number): void;
  copy(src: Storage, srcOffset: number, dst: Storage, dstOffset: number, bytes: number): void;
  /** Submit encoded work without waiting. */
  flush(): void;
  /** Wait for all submitted work and surface any deferred error (compile, validation, out of memory). */
  sync(): Promise<void>;
  /** Live, cached and retiring buffers, with peaks since `resetPeak`. */
  pool(): PoolStats;
  /** Start measuring the peaks of live and held bytes from now. */
  resetPeak(): void;
  /** How many free bytes the pool keeps cached between steps (see `cacheLimitFor`); the rest is destroyed once unused. */
  setCacheLimit(bytes: number): void;
  /**
   * The most bytes one buffer may hold and a kernel bind: the smaller of the adapter's maxBufferSize
   * and maxStorageBufferBindingSize (unlimited on the meta device unless set). Models that can split
   * a large activation (the VAE's channel slabs) read it.
   */
  readonly maxBindingBytes: number;
  /**
   * Storage buffers one dispatch may bind: the device's maxStorageBuffersPerShaderStage (WebGPU's
   * default is 8), read once when the backend is made. Ops whose fused kernel would bind more take
   * their fallback (unpaired GEMMs, the attention backward in two dispatches), so the choice is the
   * same for every dispatch of the backend's life and is made before the first.
   */
  readonly maxStorageBuffers: number;
  readonly stats: RunStats;
  resetStats(): void;
}

/** The meta device's stand-in for a buffer: only its size. */
export interface MetaBuffer {
  readonly metaBytes: number;
}

let nextId = 1;

/** Bytes per kernel-uniform slot: WebGPU's default minUniformBufferOffsetAlignment. */
const UNIFORM_SLOT = 256;

/** Bytes of uploads one submit may stage (see `GpuBackend.write`); a larger upload submits first instead. */
const UPLOAD_ARENA = 1 << 22;

/** Cached bind groups before the GPU backend starts afresh: a few steps' worth of distinct ones. */
const MAX_BIND_GROUPS = 50_000;

function emptyStats(): RunStats {
  return { dispatches: 0, flops: 0, bytes: 0, submits: 0, byKernel: new Map() };
}

function count(stats: RunStats, k: Kernel): void {
  stats.dispatches++;
  stats.flops += k.flops;
  stats.bytes += k.bytes;
  let e = stats.byKernel.get(k.name);
  if (!e) stats.byKernel.set(k.name, (e = { dispatches: 0, flops: 0, bytes: 0 }));
  e.dispatches++;
  e.flops += k.flops;
  e.bytes += k.bytes;
}

/**
 * Shapes and bytes only: runs the same op code, allocates nothing real, reports peak bytes and FLOPs.
 * Its pool is the GPU backend's, with the same cache limit: `sync` stands for the GPU finishing the
 * work submitted so far, so held bytes (live + cached) follow what a GPU run holds.
 */
export class MetaBackend implements Backend {
  readonly kind = 'meta' as const;
  readonly stats = emptyStats();
  private readonly bufs: BufferPool<MetaBuffer>;

  /** Set to a GPU's limit to forecast what runs there. */
  maxBindingBytes = Infinity;
  /** Set to a GPU's maxStorageBuffersPerShaderStage to run (and count) the fallbacks it takes; unlimited by default. */
  maxStorageBuffers = Infinity;
  /** Set to a GPU's subgroups (and `nativeF16` to its f16 reads) to dispatch the kernels that GPU runs (see `recordSources`). */
  subgroups: SubgroupSizes | null = null;
  nativeF16 = false;
  /**
   * When set, `run` records each dispatched kernel's WGSL source (the GPU backend's pipeline key)
   * in `sources`: what a GPU run of the same work would compile. Off by default: sources cost a lookup.
   */
  recordSources = false;
  /** Distinct sources dispatched while `recordSources` was on, each with its kernel's name. */
  readonly sources = new Map<string, string>();

  constructor(cacheLimit = DEFAULT_CACHE_LIMIT) {
    this.bufs = new BufferPool<MetaBuffer>({ create: (b) => ({ metaBytes: b }), destroy: () => {} }, { cacheLimit });
  }

  alloc(bytes: number): Storage {
    const buffer = this.bufs.acquire(bytes);
    return { id: nextId++, bytes: buffer.metaBytes, buffer, refs: 0 };
  }
  release(s: Storage): void {
    this.bufs.release(s.buffer as MetaBuffer);
  }
  run(k: Kernel): void {
    count(this.stats, k);
    // As the GPU backend: an empty dispatch builds no pipeline.
    if (this.recordSources && k.workgroups.every((n) => n > 0)) this.sources.set(k.source(), k.name);
  }
  write(): void {}
  read(): Promise<ArrayBuffer> {
    return Promise.reject(new Error('the meta device holds no data: read a tensor on a GPU backend'));
  }
  clear(): void {}
  copy(): void {}
  flush(): void {}
  /** A mark covering the work so far, for `complete`. */
  mark(): number {
    return this.bufs.mark();
  }
  /** As if the GPU had finished the work up to `mark` (default: all of it): what a GPU backend's pool would destroy then, this one drops. */
  complete(mark = this.bufs.mark()): void {
    this.bufs.done(mark);
  }
  async sync(): Promise<void> {
    this.complete();
  }
  pool(): PoolStats {
    return this.bufs.stats();
  }
  resetPeak(): void {
    this.bufs.resetPeak();
  }
  setCacheLimit(bytes: number): void {
    this.bufs.setCacheLimit(bytes);
  }
  resetStats(): void {
    Object.assign(this.stats, emptyStats());
  }
}

/** Options for per-dispatch GPU timing with timestamp queries. */
export interface ProfileSample {
  name: string;
  ns: number;
}

/** Runs kernels on a GPUDevice, batching dispatches into one compute pass until something forces a submit. */
export class GpuBackend implements Backend {
  readonly kind = 'gpu' as const;
  readonly stats = emptyStats();
  readonly pipelines: PipelineCache;
  private readonly bufs: BufferPool<GPUBuffer>;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  /** The pipeline the open pass last set: consecutive dispatches of one pipeline set it once (each native call costs µs in Dawn/Node). */
  private passPipeline: GPUComputePipeline | null = null;
  private encoded = 0;
  private readonly errors: Error[] = [];
  /** Settles once the validation scopes of every submit so far have been popped (their errors are in `errors`). */
  private validated: Promise<void> = Promise.resolve();
  /** Set once the device is lost (driver reset, GPU removed, destroyed); nothing runs on it after that. */
  lostInfo: GPUDeviceLostInfo | null = null;
  private maxDispatches = 512;
  private profiling: { set: GPUQuerySet; names: string[]; capacity: number } | null = null;
  /**
   * Kernel uniforms of the dispatches encoded since the last submit, one 256-byte slot each
   * (WebGPU's minUniformBufferOffsetAlignment): written to `uniformBuf` in one call just before
   * the submit. Queue order makes reuse safe: the write lands after the previous submit has run.
   */
  private uniformData = new Uint32Array((UNIFORM_SLOT / 4) * this.maxDispatches);
  private uniformSlots = 0;
  private uniformBuf: GPUBuffer | null = null;
  private readonly dynamicOffset = new Uint32Array(1);
  /**
   * Uploads made while commands are being encoded, staged like the uniforms: written to `uploadBuf`
   * just before the submit and copied to their targets by commands in encoding order, so a write
   * needs no submit of its own (a training step made one per upload: 229 for 1,725 dispatches).
   */
  private readonly uploadData = new Uint8Array(UPLOAD_ARENA);
  private uploadBytes = 0;
  private uploadBuf: GPUBuffer | null = null;
  /**
   * Reuse bind groups of the same layout and buffer ranges (see `bindGroup`). Off in a bare backend;
   * `acquireGpu` turns it on for every device: the pool hands a repeated step the same buffers in
   * the same order (earliest-made free buffer first), so from the second step on every group is
   * found cached (100% hits in bench --encode, was 11% with the old last-released-first pool).
   */
  cacheBindGroups = false;
  /** Bind groups by layout and buffer ranges (see `bindGroup`), and the keys that use each buffer. */
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly groupKeys = new Map<GPUBuffer, string[]>();
  /** Pool buffers' ids, for bind group keys. */
  private readonly bufferIds = new Map<GPUBuffer, number>();
  private nextBufferId = 1;
  private profileOut: Promise<ProfileSample[]>[] = [];
  /** While set, every command is also recorded there (see replay.ts). */
  private recording: StepRecording | null = null;

  /** Dispatches encoded before an automatic submit: keeps command buffers bounded. */
  get maxDispatchesPerSubmit(): number {
    return this.maxDispatches;
  }

  /**
   * A larger limit grows the uniform arena to one slot per dispatch (else a full arena would still
   * submit at the old count): pending work is submitted first, and the cached bind groups, which bind
   * the old arena buffer, are dropped; that buffer is destroyed once the GPU is done with it.
   */
  set maxDispatchesPerSubmit(n: number) {
    this.maxDispatches = n;
    const words = (UNIFORM_SLOT / 4) * n;
    if (words <= this.uniformData.length) return;
    this.flush();
    this.uniformData = new Uint32Array(words);
    const old = this.uniformBuf;
    this.uniformBuf = null;
    this.forgetBindGroups();
    if (old) this.device.queue.onSubmittedWorkDone().then(() => old.destroy(), () => {});
  }

  get maxBindingBytes(): number {
    return Math.min(this.device.limits.maxBufferSize, this.device.limits.maxStorageBufferBindingSize);
  }

  /** The device's maxStorageBuffersPerShaderStage, read once (see `Backend.maxStorageBuffers`). */
  readonly maxStorageBuffers: number;

  /**
   * Whether kernels may read f16 storage natively (the device has `shader-f16`): read once here,
   * as a device's features never change, instead of a `features.has` per GEMM and conv call.
   */
  readonly nativeF16: boolean;

  /**
   * Subgroup sizes the reduction kernels may use (`probeSubgroups`, set by `acquireGpu`); null keeps
   * their workgroup-memory trees, as on a bare backend or a device without the `subgroups` feature.
   */
  subgroups: SubgroupSizes | null = null;

  constructor(readonly device: GPUDevice) {
    this.nativeF16 = device.features.has('shader-f16');
    this.maxStorageBuffers = device.limits.maxStorageBuffersPerShaderStage;
    this.pipelines = new PipelineCache(device);
    this.bufs = new BufferPool<GPUBuffer>({
      create: (bytes) => {
        device.pushErrorScope('out-of-memory');
        const b = device.createBuffer({ size: bytes, usage: STORAGE_USAGE });
        void device.popErrorScope().then((e) => {
          if (e) this.errors.push(new GpuOutOfMemoryError(bytes, this.bufs.stats().liveBytes));
        });
        this.bufferIds.set(b, this.nextBufferId++);
        return b;
      },
      destroy: (b) => {
        this.forgetBuffer(b);
        b.destroy();
      },
    }, { cacheLimit: DEFAULT_CACHE_LIMIT, maxBufferSize: device.limits.maxBufferSize, maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize });
    void device.lost?.then((info) => (this.lostInfo = info));
    device.addEventListener?.('uncapturederror', (ev) => {
      const message = (ev as GPUUncapturedErrorEvent).error.message;
      // Echoes of an error already reported (an invalid bind group makes its pass, encoder and submit invalid too).
      if (/invalid due to a previous error/.test(message)) return;
      this.errors.push(new Error(`WebGPU error: ${message}`));
    });
  }

  alloc(bytes: number): Storage {
    const buffer = this.bufs.acquire(bytes);
    return { id: nextId++, bytes: buffer.size, buffer, refs: 0 };
  }

  release(s: Storage): void {
    this.bufs.release(s.buffer as GPUBuffer);
  }

  /**
   * The open command encoder. Each one's encoding runs inside a validation error scope, popped at its
   * submit, so a read can wait for the verdict on everything before it (the uncapturederror event
   * may arrive after a later mapAsync has resolved, as seen in Chromium).
   */
  private enc(): GPUCommandEncoder {
    if (!this.encoder) {
      this.device.pushErrorScope('validation');
      this.encoder = this.device.createCommandEncoder();
    }
    return this.encoder;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
    this.passPipeline = null;
  }

  run(k: Kernel, bindings: Binding[]): void {
    count(this.stats, k);
    this.recording?.count(k);
    const w = k.workgroups;
    const x = w[0], y = w[1], z = w[2];
    if (x === 0 || y === 0 || z === 0) return;
    this.enc(); // the bind group below is made inside this encoder's error scope
    const p = this.pipelines.get(k.name, k.source());
    const bindGroup = this.bindGroup(p, bindings);
    if (p.uniformBinding >= 0 && !k.uniforms) throw new Error(`kernel ${k.name} declares a uniform block but passes no uniforms`);
    // The slot first: a full arena submits, which ends the pass.
    if (p.uniformBinding >= 0) this.dynamicOffset[0] = this.uniformSlot(k);
    this.recording?.dispatch(k, p.pipeline, bindGroup, bindings);
    if (this.profiling) {
      this.endPass();
      const pr = this.profiling;
      if (pr.names.length >= pr.capacity) this.collectProfile();
      const i = this.profiling.names.length;
      this.profiling.names.push(k.name);
      this.pass = this.enc().beginComputePass({ timestampWrites: { querySet: this.profiling.set, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
    } else this.pass ??= this.enc().beginComputePass();
    if (this.passPipeline !== p.pipeline) this.pass.setPipeline((this.passPipeline = p.pipeline));
    if (p.uniformBinding >= 0) this.pass.setBindGroup(0, bindGroup, this.dynamicOffset, 0, 1);
    else this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
    if (this.profiling) this.endPass();
    if (++this.encoded >= this.maxDispatches) this.flush();
  }

  /**
   * The bind group of these buffer ranges on this layout, cached when `cacheBindGroups` is on (a
   * destroyed buffer drops its groups). The uniform block is bound once per group (a whole arena
   * slot; which slot comes as the dynamic offset), so uniforms do not make groups differ.
   */
  private bindGroup(p: CompiledPipeline, bindings: Binding[]): GPUBindGroup {
    if (!this.cacheBindGroups) return this.createBindGroup(p, bindings);
    let key = String(p.layoutId);
    for (const b of bindings) key += `|${this.bufferIds.get(b.storage.buffer as GPUBuffer)}:${b.offset}:${b.size}`;
    const hit = this.bindGroups.get(key);
    if (hit) return hit;
    const group = this.createBindGroup(p, bindings);
    if (this.bindGroups.size >= MAX_BIND_GROUPS) this.forgetBindGroups();
    this.bindGroups.set(key, group);
    for (const b of bindings) {
      const buf = b.storage.buffer as GPUBuffer;
      const keys = this.groupKeys.get(buf);
      if (keys) keys.push(key);
      else this.groupKeys.set(buf, [key]);
    }
    return group;
  }

  private createBindGroup(p: CompiledPipeline, bindings: Binding[]): GPUBindGroup {
    const entries: GPUBindGroupEntry[] = bindings.map((b, i) => ({ binding: i, resource: { buffer: b.storage.buffer as GPUBuffer, offset: b.offset, size: b.size } }));
    if (p.uniformBinding >= 0) entries.push({ binding: p.uniformBinding, resource: { buffer: this.uniformBuffer(), offset: 0, size: UNIFORM_SLOT } });
    return this.device.createBindGroup({ layout: p.layout, entries });
  }

  /** Drop every cached bind group (the cache is full). */
  private forgetBindGroups(): void {
    this.bindGroups.clear();
    this.groupKeys.clear();
  }

  /** Drop the cached bind groups that use `buf`: it is about to be destroyed. */
  private forgetBuffer(buf: GPUBuffer): void {
    for (const key of this.groupKeys.get(buf) ?? []) this.bindGroups.delete(key);
    this.groupKeys.delete(buf);
    this.bufferIds.delete(buf);
  }

  /** Cached bind groups (for tests and benchmarks). */
  get bindGroupCount(): number {
    return this.bindGroups.size;
  }

  /** The uniform arena's buffer: one slot per dispatch of a submit, made once. */
  private uniformBuffer(): GPUBuffer {
    return (this.uniformBuf ??= this.device.createBuffer({ size: this.uniformData.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }));
  }

  /** Copy a kernel's uniforms into the next arena slot and return its byte offset; the slot's bytes reach the GPU at `flush`. */
  private uniformSlot(k: Kernel): number {
    const u = k.uniforms!;
    if (u.length > MAX_UNIFORM_WORDS) throw new Error(`kernel ${k.name} passes ${u.length} uniform words (at most ${MAX_UNIFORM_WORDS})`);
    return this.uniformWords(u);
  }

  private uniformWords(u: Uint32Array): number {
    const capacity = this.uniformData.length / (UNIFORM_SLOT / 4);
    if (this.uniformSlots >= capacity) this.flush();
    const slot = this.uniformSlots++;
    this.uniformData.set(u, (slot * UNIFORM_SLOT) / 4);
    return slot * UNIFORM_SLOT;
  }

  write(s: Storage, offset: number, data: ArrayBufferView): void {
    this.recording?.write(s.buffer as GPUBuffer, offset, data);
    this.writeBuffer(s.buffer as GPUBuffer, offset, data);
  }

  private writeBuffer(buf: GPUBuffer, offset: number, data: ArrayBufferView): void {
    const n = data.byteLength;
    // Buffer copies move whole words; anything else (and a write with nothing encoded) goes through the queue.
    if (this.encoder && n > 0 && n % 4 === 0 && offset % 4 === 0 && n <= UPLOAD_ARENA / 4) {
      if (this.uploadBytes + n > UPLOAD_ARENA) this.flush();
      else return this.stageUpload(buf, offset, data);
    }
    this.flush();
    this.device.queue.writeBuffer(buf, offset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Copy `data` into the upload arena and encode its copy to `buf`; the bytes reach the GPU at `flush`. */
  private stageUpload(buf: GPUBuffer, offset: number, data: ArrayBufferView): void {
    const n = data.byteLength;
    this.uploadData.set(new Uint8Array(data.buffer, data.byteOffset, n), this.uploadBytes);
    this.uploadBuf ??= this.device.createBuffer({ size: UPLOAD_ARENA, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    this.endPass();
    this.enc().copyBufferToBuffer(this.uploadBuf, this.uploadBytes, buf, offset, n);
    this.uploadBytes += n;
  }

  clear(s: Storage, offset: number, bytes: number): void {
    this.recording?.clear(s.buffer as GPUBuffer, offset, bytes);
    this.endPass();
    this.enc().clearBuffer(s.buffer as GPUBuffer, offset, bytes);
  }

  copy(src: Storage, srcOffset: number, dst: Storage, dstOffset: number, bytes: number): void {
    this.recording?.copy(src.buffer as GPUBuffer, srcOffset, dst.buffer as GPUBuffer, dstOffset, bytes);
    this.endPass();
    this.enc().copyBufferToBuffer(src.buffer as GPUBuffer, srcOffset, dst.buffer as GPUBuffer, dstOffset, bytes);
  }

  read(s: Storage, offset: number, bytes: number): Promise<ArrayBuffer> {
    this.recording?.read(s.buffer as GPUBuffer, offset, bytes);
    return this.readBuffer(s.buffer as GPUBuffer, offset, bytes);
  }

  private async readBuffer(buf: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.endPass();
    this.enc().copyBufferToBuffer(buf, offset, staging, 0, size);
    this.flush();
    const mark = this.bufs.mark();
    try {
      await staging.mapAsync(GPUMapMode.READ);
      // The copy ran after everything submitted before it: the pool may destroy what that work used.
      this.bufs.done(mark);
      await this.validated;
      // A submit that failed validation (an unaligned binding, say) ran nothing: its outputs would read as stale zeros.
      this.throwPending();
      return staging.getMappedRange().slice(0, bytes);
    } catch (e) {
      throw (await this.lostError()) ?? e;
    } finally {
      staging.destroy();
    }
  }

  /** Throw the first deferred error and drop the rest: after one failure, later ones are most likely its consequences. */
  private throwPending(): void {
    const e = this.errors[0];
    this.errors.length = 0;
    if (e) throw e;
  }

  /** A GpuDeviceLostError when the device is gone (waiting briefly, as the lost promise can trail a failed read), else null. */
  private async lostError(): Promise<GpuDeviceLostError | null> {
    const info = this.lostInfo ?? (await Promise.race([this.device.lost, new Promise<null>((r) => setTimeout(r, 100, null))]));
    return info ? new GpuDeviceLostError(info.reason, info.message) : null;
  }

  flush(): void {
    this.endPass();
    if (!this.encoder) return;
    if (this.uniformSlots) {
      this.device.queue.writeBuffer(this.uniformBuf!, 0, this.uniformData.buffer, 0, this.uniformSlots * UNIFORM_SLOT);
      this.uniformSlots = 0;
    }
    if (this.uploadBytes) {
      this.device.queue.writeBuffer(this.uploadBuf!, 0, this.uploadData.buffer, 0, this.uploadBytes);
      this.uploadBytes = 0;
    }
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    const verdict = this.device.popErrorScope().then(
      (e) => void (e && this.errors.push(new Error(`WebGPU error: ${e.message}`))),
      () => {},
    );
    this.validated = Promise.all([this.validated, verdict]).then(() => {});
    this.encoded = 0;
    this.stats.submits++;
    // Buffers released so far are used by this submit at the latest: destroy them only once it is done.
    const mark = this.bufs.mark();
    this.device.queue.onSubmittedWorkDone().then(() => this.bufs.done(mark), () => {});
  }

  async sync(): Promise<void> {
    this.flush();
    const mark = this.bufs.mark();
    await this.device.queue.onSubmittedWorkDone();
    this.bufs.done(mark);
    await this.pipelines.check();
    await this.validated;
    this.throwPending();
  }

  pool(): PoolStats {
    return this.bufs.stats();
  }
  resetPeak(): void {
    this.bufs.resetPeak();
  }
  setCacheLimit(bytes: number): void {
    this.bufs.setCacheLimit(bytes);
  }
  resetStats(): void {
    Object.assign(this.stats, emptyStats());
  }

  /**
   * Record every command from now until `stopRecording`, with the values the caller declares for
   * this piece of work (replay.ts): two recordings of a repeated step make a `StepPlan`.
   */
  startRecording(values: StepValues): void {
    if (this.recording) throw new Error('startRecording: a recording is already running');
    this.recording = new StepRecording(values, this.uniformBuf, this.bufs);
  }

  /** End the recording (classifying its buffers) and return it. */
  stopRecording(): StepRecording {
    const r = this.recording;
    if (!r) throw new Error('stopRecording: nothing is being recorded');
    this.recording = null;
    r.finish(this.uniformBuf);
    return r;
  }

  /** Why `plan` cannot replay now, or null (see `planInvalid`; per-dispatch timing and a running recording also refuse). */
  replayRefusal(plan: StepPlan, values: StepValues): string | null {
    if (this.profiling) return 'per-dispatch timing is on';
    if (this.recording) return 'a recording is running';
    return planInvalid(plan, values, this.bufs, this.uniformBuf);
  }

  /**
   * Encode a recorded plan again with this step's values, without the code that made it: the same
   * pipelines, bind groups and workgroups, the uniform words (declared ones patched), uploads and
   * readbacks. Check `replayRefusal` first. Returns the plan's readbacks, in order.
   */
  replay(plan: StepPlan, values: StepValues): Promise<ArrayBuffer>[] {
    const reads: Promise<ArrayBuffer>[] = [];
    for (const c of plan.commands) {
      if (c.op === 'dispatch') this.replayDispatch(c, values);
      else if (c.op === 'write') this.writeBuffer(c.buffer, c.offset, uploadBytes(c, values));
      else if (c.op === 'read') reads.push(this.readBuffer(c.buffer, c.offset, c.bytes));
      else {
        this.endPass();
        if (c.op === 'clear') this.enc().clearBuffer(c.buffer, c.offset, c.bytes);
        else this.enc().copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.bytes);
      }
    }
    for (const [name, e] of plan.kernels) {
      const s = this.stats.byKernel.get(name);
      if (s) {
        s.dispatches += e.dispatches;
        s.flops += e.flops;
        s.bytes += e.bytes;
      } else this.stats.byKernel.set(name, { ...e });
      this.stats.dispatches += e.dispatches;
      this.stats.flops += e.flops;
      this.stats.bytes += e.bytes;
    }
    // As if the plan's scratch buffers had been acquired and released again: the pool destroys none before this work is done.
    this.bufs.touch(plan.scratch);
    return reads;
  }

  private replayDispatch(c: Extract<PlanCommand, { op: 'dispatch' }>, values: StepValues): void {
    let offset = -1;
    if (c.uniforms) {
      offset = this.uniformWords(c.uniforms);
      const base = offset / 4;
      for (const [w, name] of c.terms) this.uniformData[base + w] = values.words.get(name)! >>> 0;
    }
    const pass = (this.pass ??= this.enc().beginComputePass());
    if (this.passPipeline !== c.pipeline) pass.setPipeline((this.passPipeline = c.pipeline));
    if (offset >= 0) {
      this.dynamicOffset[0] = offset;
      pass.setBindGroup(0, c.group, this.dynamicOffset, 0, 1);
    } else pass.setBindGroup(0, c.group);
    pass.dispatchWorkgroups(c.x, c.y, c.z);
    if (++this.encoded >= this.maxDispatches) this.flush();
  }

  /** Whether per-dispatch timing is possible on this device. */
  get canProfile(): boolean {
    return this.device.features.has('timestamp-query');
  }

  /** Time every dispatch (one pass each) until `stopProfile`; costs some speed, so only for benchmarks. */
  startProfile(capacity = 1024): void {
    if (!this.canProfile) throw new Error('this adapter has no timestamp-query feature');
    this.endPass();
    this.profiling = { set: this.device.createQuerySet({ type: 'timestamp', count: 2 * capacity }), names: [], capacity };
  }

  private collectProfile(): void {
    const p = this.profiling!;
    const n = p.names.length;
    const resolve = this.device.createBuffer({ size: 16 * n, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const staging = this.device.createBuffer({ size: 16 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.endPass();
    this.enc().resolveQuerySet(p.set, 0, 2 * n, resolve, 0);
    this.enc().copyBufferToBuffer(resolve, 0, staging, 0, 16 * n);
    this.flush();
    const names = p.names;
    this.profileOut.push(
      staging.mapAsync(GPUMapMode.READ).then(() => {
        const t = new BigInt64Array(staging.getMappedRange());
        const out = names.map((name, i) => ({ name, ns: Number(t[2 * i + 1]! - t[2 * i]!) }));
        staging.destroy();
        resolve.destroy();
        return out;
      }),
    );
    this.profiling = { set: this.device.createQuerySet({ type: 'timestamp', count: 2 * p.capacity }), names: [], capacity: p.capacity };
  }

  /** Stop timing and return the GPU time of each dispatch since `startProfile`. */
  async stopProfile(): Promise<ProfileSample[]> {
    if (!this.profiling) return [];
    if (this.profiling.names.length) this.collectProfile();
    this.profiling = null;
    const parts = await Promise.all(this.profileOut);
    this.profileOut = [];
    return parts.flat();
  }
}

/** The device stopped existing under us: a driver reset or crash, a removed GPU, or `destroy()`. */
export class GpuDeviceLostError extends Error {
  constructor(readonly reason: string, readonly detail: string) {
    const why = reason === 'destroyed' ? 'destroyed' : `the driver reset or the GPU went away${detail ? `: ${detail}` : ''}`;
    super(`The GPU device was lost (${why}). Nothing more can run on it; start again on a fresh device.`);
    this.name = 'GpuDeviceLostError';
  }
}

/** The GPU refused an allocation: names the size asked for and what was already live. */
export class GpuOutOfMemoryError extends Error {
  constructor(readonly requested: number, readonly live: number) {
    super(
      `GPU out of memory allocating ${formatBytes(requested, { unit: 'MiB' })} with ${formatBytes(live, { unit: 'MiB' })} in use. ` +
        'Lower the resolution or batch size, enable gradient checkpointing, or close other GPU-heavy tabs.',
    );
    this.name = 'GpuOutOfMemoryError';
  }
}
