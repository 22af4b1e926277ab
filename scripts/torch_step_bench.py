#!/usr/bin/env python3
"""The per-op table of src/bench/op-cases.ts timed in PyTorch: same ops, same SD 1.5 shapes, JSON lines with torchMs.

A full SD 1.5 LoRA step in PyTorch needs diffusers and the weights, which a bare GPU machine lacks;
the U-Net's ops at its shapes need only torch. Run: python3 scripts/torch_step_bench.py [--quick]
[--only SUBSTR] [--reps N] [--device cuda|cpu]. Timing: CUDA events around each run after warm-up
(cuDNN autotuning excluded), median of --reps; f32 with TF32 off, as the WebGPU side computes.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F


def attention(q, k, v, heads):
    """softmax(q k^T / sqrt(D)) v per head on [B, N, H*D] tensors."""
    b, s, hd = q.shape
    d = hd // heads
    qh, kh, vh = (t.reshape(b, t.shape[1], heads, d).transpose(1, 2) for t in (q, k, v))
    if hasattr(F, "scaled_dot_product_attention"):
        o = F.scaled_dot_product_attention(qh, kh, vh)
    else:  # torch < 2.0
        o = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), dim=-1) @ vh
    return o.transpose(1, 2).reshape(b, s, hd)


def cases(quick):
    """(op, shape, input shapes, fn) rows in the order and naming of the TypeScript bench."""
    f = 4 if quick else 1
    levels = [(64, 320), (32, 640), (16, 1280), (8, 1280)]
    rows = []
    for hw, c in levels:
        h = hw // f
        rows.append(("conv3x3", f"1x{c}x{h}x{h} -> {c}", [(1, c, h, h), (c, c, 3, 3), (c,)], lambda x, w, b: F.conv2d(x, w, b, padding=1)))
    for m, k, n in [(4096 // f**2, 320, 320), (1024 // f**2, 640, 640), (256 // f**2, 1280, 1280), (77, 768, 320)]:
        rows.append(("linear", f"{m}x{k} -> {n}", [(m, k), (n, k), (n,)], F.linear))
    for kind, s, hd in [("self", 4096, 320), ("self", 1024, 640), ("cross", 4096, 320), ("cross", 1024, 640)]:
        s //= f**2
        keys = s if kind == "self" else 77
        rows.append((f"attention-{kind}", f"8x{s}x{hd // 8} keys {keys}", [(1, s, hd), (1, keys, hd), (1, keys, hd)], lambda q, k, v: attention(q, k, v, 8)))
    for hw, c in levels:
        h = hw // f
        rows.append(("groupnorm-silu", f"1x{c}x{h}x{h} g32", [(1, c, h, h), (c,), (c,)], lambda x, s, b: F.silu(F.group_norm(x, 32, s, b, 1e-5))))
    return rows


def timed(fn, device):
    """Milliseconds for one run, waiting for the device."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = a.device
    name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    print(json.dumps({"torch": torch.__version__, "device": name, "quick": a.quick, "reps": a.reps}))
    gen = torch.Generator().manual_seed(0)
    for op, shape, shapes, fn in cases(a.quick):
        if a.only and a.only not in f"{op} {shape}":
            continue
        xs = [(torch.rand(s, generator=gen) * 2 - 1).to(dev) for s in shapes]
        with torch.no_grad():
            run = lambda: fn(*xs)  # noqa: E731
            for _ in range(3):
                timed(run, dev)
            ms = statistics.median(timed(run, dev) for _ in range(a.reps))
        print(json.dumps({"op": op, "shape": shape, "torchMs": round(ms, 4)}))


if __name__ == "__main__":
    main()
