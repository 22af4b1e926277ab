// CPU float64 references shared by op tests (written from the definitions, independent of the kernels).

/** C[b] = op(A[b]) op(B[b]) with A [batch, ar, ac], B [batch, br, bc] (batch 1 broadcasts). */
export function refMatmul(a: Float64Array, aShape: number[], b: Float64Array, bShape: number[], transA = false, transB = false): Float64Array {
  const [ab, ar, ac] = aShape as [number, number, number];
  const [bb, br, bc] = bShape as [number, number, number];
  const [M, K] = transA ? [ac, ar] : [ar, ac];
  const N = transB ? br : bc;
  const batch = Math.max(ab, bb);
  const out = new Float64Array(batch * M * N);
  for (let t = 0; t < batch; t++) {
    const ao = (ab === 1 ? 0 : t) * ar * ac;
    const bo = (bb === 1 ? 0 : t) * br * bc;
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[ao + (transA ? k * M + m : m * K + k)]! * b[bo + (transB ? n * K + k : k * N + n)]!;
        out[t * M * N + m * N + n] = s;
      }
  }
  return out;
}

/** Transpose the last two dims of [batch, r, c]. */
export function refTranspose(a: Float64Array, batch: number, r: number, c: number): Float64Array {
  const out = new Float64Array(a.length);
  for (let t = 0; t < batch; t++) for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[t * r * c + j * r + i] = a[t * r * c + i * c + j]!;
  return out;
}
