// CPU float64 references shared by op tests (written from the definitions, independent of the kernels).

/** Geometry of a reference convolution. */
export interface RefConv {
  N: number;
  C: number;
  H: number;
  W: number;
  O: number;
  k: number;
  stride: number;
  pad: [number, number, number, number];
}

export function refConvOut(c: RefConv): [number, number] {
  return [Math.floor((c.H + c.pad[0] + c.pad[1] - c.k) / c.stride) + 1, Math.floor((c.W + c.pad[2] + c.pad[3] - c.k) / c.stride) + 1];
}

/** Direct convolution in float64; calls `visit(yIndex, xIndex, wIndex)` for each multiply when given. */
export function refConv(x: Float64Array, w: Float64Array, b: Float64Array | null, c: RefConv, visit?: (yi: number, xi: number, wi: number) => void): Float64Array {
  const [OH, OW] = refConvOut(c);
  const y = new Float64Array(c.N * c.O * OH * OW);
  for (let n = 0; n < c.N; n++)
    for (let o = 0; o < c.O; o++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          const yi = ((n * c.O + o) * OH + oh) * OW + ow;
          let s = b ? b[o]! : 0;
          for (let ch = 0; ch < c.C; ch++)
            for (let i = 0; i < c.k; i++)
              for (let j = 0; j < c.k; j++) {
                const ih = oh * c.stride - c.pad[0] + i;
                const iw = ow * c.stride - c.pad[2] + j;
                if (ih < 0 || iw < 0 || ih >= c.H || iw >= c.W) continue;
                const xi = ((n * c.C + ch) * c.H + ih) * c.W + iw;
                const wi = ((o * c.C + ch) * c.k + i) * c.k + j;
                s += x[xi]! * w[wi]!;
                visit?.(yi, xi, wi);
              }
          y[yi] = s;
        }
  return y;
}

/** Vector-Jacobian product of `refConv` for x, w and bias. */
export function refConvGrad(x: Float64Array, w: Float64Array, g: Float64Array, c: RefConv): [Float64Array, Float64Array, Float64Array] {
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  const db = new Float64Array(c.O);
  const [OH, OW] = refConvOut(c);
  refConv(x, w, null, c, (yi, xi, wi) => {
    dx[xi] = dx[xi]! + g[yi]! * w[wi]!;
    dw[wi] = dw[wi]! + g[yi]! * x[xi]!;
  });
  for (let i = 0; i < g.length; i++) {
    const o = Math.floor(i / (OH * OW)) % c.O;
    db[o] = db[o]! + g[i]!;
  }
  return [dx, dw, db];
}

/** Attention with explicit softmax in float64; q [B,Nq,H*D], k/v [B,Nk,H*D]. Returns output and, given dO, the VJP. */
export function refAttention(q: Float64Array, k: Float64Array, v: Float64Array, B: number, Nq: number, Nk: number, H: number, D: number, causal: boolean, gOut?: Float64Array) {
  const HD = H * D;
  const scale = 1 / Math.sqrt(D);
  const o = new Float64Array(B * Nq * HD);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < Nq; i++) {
        const qi = (b * Nq + i) * HD + h * D;
        const s: number[] = [];
        for (let j = 0; j < Nk; j++) {
          const kj = (b * Nk + j) * HD + h * D;
          let d = 0;
          for (let t = 0; t < D; t++) d += q[qi + t]! * k[kj + t]!;
          s.push(causal && j > i ? -Infinity : d * scale);
        }
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const z = e.reduce((a, c) => a + c, 0);
        const p = e.map((x) => x / z);
        for (let j = 0; j < Nk; j++) {
          const vj = (b * Nk + j) * HD + h * D;
          for (let t = 0; t < D; t++) o[qi + t] = o[qi + t]! + p[j]! * v[vj + t]!;
        }
        if (!gOut) continue;
        const dp = p.map((_, j) => {
          const vj = (b * Nk + j) * HD + h * D;
          let d = 0;
          for (let t = 0; t < D; t++) d += gOut[qi + t]! * v[vj + t]!;
          return d;
        });
        const dot = p.reduce((a, pj, j) => a + pj * dp[j]!, 0);
        for (let j = 0; j < Nk; j++) {
          const kj = (b * Nk + j) * HD + h * D;
          const ds = p[j]! * (dp[j]! - dot) * scale;
          for (let t = 0; t < D; t++) {
            dv[kj + t] = dv[kj + t]! + p[j]! * gOut[qi + t]!;
            dq[qi + t] = dq[qi + t]! + ds * k[kj + t]!;
            dk[kj + t] = dk[kj + t]! + ds * q[qi + t]!;
          }
        }
      }
  return { o, dq, dk, dv };
}
