// Pipeline reuse checks: how many pipelines a piece of GPU work compiles on a backend.

/** Run `work` (which checks its own results) and return how many pipelines the backend compiled meanwhile. */
export async function pipelinesCompiledBy(b: { pipelines: { size: number } }, work: () => Promise<unknown>): Promise<number> {
  const before = b.pipelines.size;
  await work();
  return b.pipelines.size - before;
}
