// Compute pipeline cache keyed by WGSL source, with compile errors turned into readable reports.

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

/** Pipelines by source. Creation is synchronous; validation results arrive later through `errors`. */
export class PipelineCache {
  private pipelines = new Map<string, GPUComputePipeline>();
  private pending: Promise<void>[] = [];
  /** Compile failures not yet reported; `check` throws the first and clears them. */
  readonly errors: Error[] = [];

  constructor(private readonly device: GPUDevice) {}

  get size(): number {
    return this.pipelines.size;
  }

  /** The pipeline for `source`, compiling it on first use. */
  get(name: string, source: string): GPUComputePipeline {
    let p = this.pipelines.get(source);
    if (p) return p;
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code: source, label: name });
    p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: name });
    const scope = this.device.popErrorScope();
    this.pending.push(
      scope.then(async (err) => {
        if (!err) return;
        const info = await module.getCompilationInfo();
        const msgs = formatMessages(info, source);
        // A broken pipeline must not be served again: the next use recompiles and reports afresh.
        this.pipelines.delete(source);
        this.errors.push(new ShaderCompileError(name, msgs.length ? msgs : [err.message], source));
      }),
    );
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
    return p;
  }
}
