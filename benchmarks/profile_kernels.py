"""One call of each kernel of interest inside a profiler range, for Nsight Compute (ncu).

Usage (device machine; benchmarks/run_device.sh stage `profile` wraps it):
  ncu --profile-from-start off --clock-control none --section SpeedOfLight ... \\
      python3 benchmarks/profile_kernels.py [--shape h24-d128-32k] [--density 0.2] [--path hopper]

Runs, for the shape of KERNEL_BENCH_SHAPES (bf16, random q / k / v): cuDNN dense (the reference the
targets are ratios of), sparse_attn at block 64 and 128 with a random index of the given density
(bench_kernels' index), attn_search (its dense flash launch and its score launch) and block_scores.
Each is warmed up outside the profiled range, then called once between
torch.cuda.profiler.start() / stop(), so ncu profiles exactly those launches. Without ncu it prints
each call's time (CUDA events), which is what the profile should add up to.
"""
from __future__ import annotations

import argparse
import math
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402
from bench_kernels import random_block_index  # noqa: E402

import adaspa_ext as A  # noqa: E402
from adaspa_ext import baselines, ops  # noqa: E402
from adaspa_ext.presets import KERNEL_BENCH_SHAPES  # noqa: E402


def main():
    shapes = {s[0]: s[1:] for s in KERNEL_BENCH_SHAPES}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="h24-d128-32k", choices=list(shapes))
    ap.add_argument("--density", type=float, default=0.2)
    ap.add_argument("--path", default="hopper", choices=ops.KERNEL_PATHS)
    args = ap.parse_args()
    torch.manual_seed(0)
    b, h, d, n = shapes[args.shape]
    q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    calls = [("cudnn dense", lambda: baselines.sdpa(q, k, v, "cudnn"))]
    with ops.use_kernel_path(args.path):
        for bs in (64, 128):
            m = math.ceil(n / bs)
            idx = random_block_index(b, h, m, m, max(1, round(args.density * m)), "cuda")
            calls.append((f"sparse_attn bs {bs} density {args.density}",
                          lambda idx=idx, bs=bs: A.sparse_attn(q, k, v, idx, bs)))
        _, lse, _ = A.attn_search(q, k, v, 64)
        calls.append(("attn_search bs 64", lambda: A.attn_search(q, k, v, 64)))
        calls.append(("block_scores bs 64", lambda: A.block_scores(q, k, lse, 64)))
        print(common.header("profile_kernels", f"{args.shape} bf16, path {args.path}"))
        for name, fn in calls:
            ms = common.time_ms(fn, warmup=3, reps=5)  # warm, outside the profiled range
            torch.cuda.synchronize()
            torch.cuda.profiler.start()
            fn()
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
            print(f"{name}: {ms:.3f} ms (median of 5, not profiled)", flush=True)


if __name__ == "__main__":
    main()
