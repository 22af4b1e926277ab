// Compute pipeline cache keyed by WGSL source, on explicit shared bind group layouts, with async precompilation
// and compile errors turned into readable reports.
import { checkKernelLimits } from './kernel-limits.js';

/** A WGSL compile or pipeline validation failure, with the messages, their lines and the source. */
export class ShaderCompileError extends Error {
  constructor(readonly kernel: string, readonly messages: string[], readonly source: string) {
    super(`WGSL compile failed for kernel "${kernel}":\n${messages.join('\n')}\n--- source ---\n${numbered(source)}`);
    this.name = 'ShaderCompileError';
  }
}

function numbered(src: string): string {
  return src.split('\n').map((l, i) => `${String(i + 1).padStart(4)}| ${l}`).join('\n');
}

/** Format compilation messages as `line:col: type: message` plus the offending line. */
export function formatMessages(info: GPUCompilationInfo, source: string): string[] {
  const lines = source.split('\n');
  return [...info.messages].map((m) => {
    const text = lines[m.lineNum - 1] ?? '';
    return `${m.lineNum}:${m.linePos}: ${m.type}: ${m.message}\n    ${text.trim()}`;
  });
}

/** What a binding declares in WGSL: read-only storage, read-write storage, or a uniform block. */
type BindingKind = 'read' | 'write' | 'uniform';

/** A compiled pipeline with the bind group layout it was built on (derived from its WGSL declarations). */
export interface CompiledPipeline {
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  /**
   * Which of the cache's distinct layouts this is: a bind group is valid for every pipeline of
   * the same layout, so bind groups are cached by layout and buffers, not by pipeline.
   */
  readonly layoutId: number;
  /** The uniform block's binding (it takes a dynamic offset), or -1 when the kernel has none. */
  readonly uniformBinding: number;
}

/** One kernel to compile: its name (for reports) and WGSL source (the cache's key). */
export interface PipelineSource {
  name: string;
  source: string;
}

const DECLARATION = /@group\(0\)\s*@binding\((\d+)\)\s*var\s*<\s*(uniform|storage\s*(?:,\s*(read_write|read))?)\s*>/g;

/** The group-0 bindings a source declares, by index: `var<storage, read>` read, `read_write` write, `var<uniform>` uniform. */
export function declaredBindings(source: string): BindingKind[] {
  const kinds: BindingKind[] = [];
  for (const m of source.matchAll(DECLARATION)) kinds[Number(m[1])] = m[2] === 'uniform' ? 'uniform' : m[3] === 'read_write' ? 'write' : 'read';
  // A gap would leave the layout unable to describe the shader: say so here rather than as a validation error later.
  for (let i = 0; i < kinds.length; i++) if (!kinds[i]) throw new Error(`WGSL declares bindings up to ${kinds.length - 1} but not @binding(${i})`);
  return kinds;
}

const BUFFER_TYPE: Record<BindingKind, GPUBufferBindingType> = { read: 'read-only-storage', write: 'storage', uniform: 'uniform' };

/**
 * Pipelines by source, on explicit bind group layouts shared by every pipeline that declares the
 * same bindings; the uniform block takes a dynamic offset, so one bind group serves every slot of
 * the backend's uniform arena. `get` creates synchronously (validation results arrive later, through
 * `check`); `compileAll` compiles many asynchronously beforehand.
 */
export class PipelineCache {
  private pipelines = new Map<string, CompiledPipeline>();
  private layouts = new Map<string, { layout: GPUBindGroupLayout; pipelineLayout: GPUPipelineLayout; id: number; uniformBinding: number }>();
  private pending: Promise<void>[] = [];
  /** Compile failures not yet reported; `check` throws the first and clears them. */
  readonly errors: Error[] = [];

  constructor(private readonly device: GPUDevice) {}

  get size(): number {
    return this.pipelines.size;
  }

  /** Whether `source` is compiled (or being validated). */
  has(source: string): boolean {
    return this.pipelines.has(source);
  }

  /** The shared layout for the bindings `source` declares. */
  private layoutFor(source: string) {
    const kinds = declaredBindings(source);
    const key = kinds.join();
    let l = this.layouts.get(key);
    if (!l) {
      const layout = this.device.createBindGroupLayout({
        entries: kinds.map((k, i) => ({ binding: i, visibility: GPUShaderStage.COMPUTE, buffer: { type: BUFFER_TYPE[k], hasDynamicOffset: k === 'uniform' } })),
      });
      l = { layout, pipelineLayout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }), id: this.layouts.size, uniformBinding: kinds.indexOf('uniform') };
      this.layouts.set(key, l);
    }
    return l;
  }

  /** The pipeline for `source`, compiling it on first use. */
  get(name: string, source: string): CompiledPipeline {
    const hit = this.pipelines.get(source);
    if (hit) return hit;
    checkKernelLimits(name, source, this.device.limits);
    const l = this.layoutFor(source);
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code: source, label: name });
    const pipeline = this.device.createComputePipeline({ layout: l.pipelineLayout, compute: { module, entryPoint: 'main' }, label: name });
    const scope = this.device.popErrorScope();
    this.pending.push(
      scope.then(async (err) => {
        if (!err) return;
        // A broken pipeline must not be served again: the next use recompiles and reports afresh.
        this.pipelines.delete(source);
        this.errors.push(await compileError(name, module, source, err.message));
      }),
    );
    const p = { pipeline, layout: l.layout, layoutId: l.id, uniformBinding: l.uniformBinding };
    this.pipelines.set(source, p);
    return p;
  }

  /** Wait for every outstanding validation result; throws the first compile error. */
  async check(): Promise<void> {
    const pend = this.pending;
    this.pending = [];
    await Promise.all(pend);
    if (this.errors.length) throw this.errors.splice(0)[0];
  }

  /** Compile `source` and wait for the verdict (used by tests and tools). */
  async compile(name: string, source: string): Promise<GPUComputePipeline> {
    const p = this.get(name, source);
    await this.check();
    return p.pipeline;
  }

  /**
   * Compile every source not yet cached with createComputePipelineAsync, `inFlight` at a time, so
   * that later `get`s find them ready. `onProgress(done, total)` counts the new ones (0 first).
   * Every source is tried (until `stopped` says true: then no more start); then the first failure
   * is thrown as a ShaderCompileError.
   */
  async compileAll(list: readonly PipelineSource[], onProgress?: (done: number, total: number) => void, inFlight = 8, stopped?: () => boolean): Promise<void> {
    const seen = new Set<string>();
    const todo = list.filter((k) => !this.pipelines.has(k.source) && !seen.has(k.source) && seen.add(k.source));
    let next = 0;
    let done = 0;
    const failures: Error[] = [];
    onProgress?.(0, todo.length);
    const lane = async () => {
      while (next < todo.length && !stopped?.()) {
        const k = todo[next++]!;
        await this.compileAsync(k).catch((e: unknown) => failures.push(e instanceof Error ? e : new Error(String(e))));
        onProgress?.(++done, todo.length);
      }
    };
    await Promise.all(Array.from({ length: Math.min(inFlight, todo.length) }, lane));
    if (failures.length) throw failures[0];
  }

  private async compileAsync({ name, source }: PipelineSource): Promise<void> {
    checkKernelLimits(name, source, this.device.limits);
    const l = this.layoutFor(source);
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code: source, label: name });
    const scope = this.device.popErrorScope();
    try {
      const pipeline = await this.device.createComputePipelineAsync({ layout: l.pipelineLayout, compute: { module, entryPoint: 'main' }, label: name });
      if (!this.pipelines.has(source)) this.pipelines.set(source, { pipeline, layout: l.layout, layoutId: l.id, uniformBinding: l.uniformBinding });
    } catch (e) {
      throw await compileError(name, module, source, e instanceof Error ? e.message : String(e));
    } finally {
      await scope;
    }
  }
}

/** A ShaderCompileError with the module's messages (or `fallback` when the compiler gave none). */
async function compileError(name: string, module: GPUShaderModule, source: string, fallback: string): Promise<ShaderCompileError> {
  const msgs = formatMessages(await module.getCompilationInfo(), source);
  return new ShaderCompileError(name, msgs.length ? msgs : [fallback], source);
}
