// Whether a device's subgroups can serve the reduction kernels: its sizes, and a one-off check of their layout.
import type { Backend, GpuBackend, MetaBackend } from './backend.js';

/** The subgroup sizes a device may run a pipeline with (powers of two, 4 to 128 in WebGPU). */
export interface SubgroupSizes {
  min: number;
  max: number;
}

/** Workgroup size of the layout probe: the largest the reduction kernels use. */
const PROBE_WG = 256;

/**
 * The probe: every invocation writes its subgroup size and subgroup invocation id. WebGPU does not
 * promise how invocations map to subgroups; the kernels need each subgroup to be one aligned run of
 * `local_invocation_index` (subgroup k holds k·sg … k·sg + sg − 1), as Vulkan, D3D12 and Metal
 * drivers lay out one-dimensional workgroups, so it is checked once per device instead of assumed.
 */
const PROBE_SOURCE = `enable subgroups;
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(${PROBE_WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_size) sg: u32, @builtin(subgroup_invocation_id) sid: u32) {
  out[2u * lid] = sg;
  out[2u * lid + 1u] = sid + 1000u * (subgroupMin(lid) - lid + sid);
}`;

/** Whether the probe's words show aligned runs of one size within `sizes`. */
export function layoutOk(words: Uint32Array, sizes: SubgroupSizes): boolean {
  const sg = words[0]!;
  if (sg < sizes.min || sg > sizes.max || (sg & (sg - 1)) !== 0 || PROBE_WG % sg !== 0) return false;
  // sid = lid mod sg, and the subgroup's smallest index is lid − sid (the 1000s digit is 0).
  for (let lid = 0; lid < PROBE_WG; lid++) if (words[2 * lid] !== sg || words[2 * lid + 1] !== lid % sg) return false;
  return true;
}

/**
 * The device's subgroup sizes if it has the `subgroups` feature, the adapter reports its sizes, and
 * the probe finds the layout the kernels rely on; null otherwise (the kernels keep their
 * workgroup-memory trees). Runs one tiny dispatch; any error means null.
 */
export async function probeSubgroups(device: GPUDevice, info: GPUAdapterInfo | undefined): Promise<SubgroupSizes | null> {
  if (!device.features.has('subgroups')) return null;
  const sized = info as { subgroupMinSize?: number; subgroupMaxSize?: number } | undefined;
  const sizes = { min: sized?.subgroupMinSize ?? 0, max: sized?.subgroupMaxSize ?? 0 };
  if (!(sizes.min >= 1 && sizes.max >= sizes.min && sizes.max <= 128)) return null;
  const bytes = PROBE_WG * 8;
  const out = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    device.pushErrorScope('validation');
    let thrown = false;
    try {
      runProbe(device, out, read, bytes);
    } catch {
      thrown = true;
    }
    if ((await device.popErrorScope()) || thrown) return null;
    await read.mapAsync(GPUMapMode.READ);
    const ok = layoutOk(new Uint32Array(read.getMappedRange().slice(0)), sizes);
    read.unmap();
    return ok ? sizes : null;
  } catch {
    return null;
  } finally {
    out.destroy();
    read.destroy();
  }
}

function runProbe(device: GPUDevice, out: GPUBuffer, read: GPUBuffer, bytes: number): void {
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code: PROBE_SOURCE }), entryPoint: 'main' } });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }] }));
  pass.dispatchWorkgroups(1);
  pass.end();
  enc.copyBufferToBuffer(out, 0, read, 0, bytes);
  device.queue.submit([enc.finish()]);
}

/** The subgroup sizes a backend's kernels may use (none where `probeSubgroups` said no; on the meta device, the GPU's it stands for). */
export function subgroupsOf(b: Backend): SubgroupSizes | null {
  return (b as GpuBackend | MetaBackend).subgroups;
}

/**
 * Subgroup sizes for a kernel whose reductions run over `lanes` consecutive invocations: only where
 * no subgroup can be larger than that run (so a subgroup never spans two rows). `lanes` is a power of two.
 */
export function subgroupsFor(b: Backend, lanes: number): SubgroupSizes | null {
  const sg = subgroupsOf(b);
  return sg && sg.max <= lanes ? sg : null;
}
