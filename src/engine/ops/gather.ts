// Row gather (embedding lookup) from a frozen table: out[i, :] = table[ids[i], :].
import { grid, memoSource, type Kernel } from '../kernel.js';
import { input, main1d, output } from '../kernels/wgsl.js';
import type { DType } from '../dtype.js';
import { tensor, type Tensor } from '../tensor.js';
import { check, emptyLike, launch } from './util.js';

const WG = 256;

/* One thread per output element; ids arrive as exact small integers in f32. */
const gatherSource = memoSource('gather', (p: { rows: number; width: number; vocab: number; dtype: DType }) => `${input('table', 0, p.dtype)}
${input('ids', 1)}
${output('out', 2)}
${main1d(WG)}
  if (gi >= ${p.rows * p.width}u) { return; }
  let r = gi / ${p.width}u;
  let id = min(u32(ld_ids(r)), ${p.vocab - 1}u);
  out[gi] = ld_table(id * ${p.width}u + gi % ${p.width}u);
}`);

function gatherKernel(rows: number, width: number, vocab: number, dtype: DType): Kernel {
  const n = rows * width;
  return { name: 'gather', source: gatherSource({ rows, width, vocab, dtype }), workgroups: grid(Math.ceil(n / WG)), flops: 0, bytes: n * 8 + rows * 4 };
}

/**
 * Look up rows of `table` [V, D] for integer `ids` (shape `idShape`); returns [...idShape, D].
 * The table is frozen: no gradient flows to it (textual-inversion training is out of scope).
 */
export function embedding(table: Tensor, ids: ArrayLike<number>, idShape: readonly number[]): Tensor {
  check(!table.requiresGrad, () => 'embedding: a trainable table is not supported');
  const [V, D] = table.shape as [number, number];
  for (let i = 0; i < ids.length; i++) check(Number.isInteger(ids[i]) && ids[i]! >= 0 && ids[i]! < V, () => `embedding: id ${ids[i]} outside [0, ${V})`);
  const idT = tensor(table.backend, ids, [ids.length]);
  const out = emptyLike(table, [...idShape, D]);
  launch(gatherKernel(ids.length, D, V, table.dtype), [table, idT], [out]);
  idT.dispose();
  return out;
}
