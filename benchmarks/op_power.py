"""Sustained runs of the ops and of cuDNN dense attention with the SM clock and board power
sampled: where each one sits against the card's power limit.

Usage (device): python benchmarks/op_power.py [--seconds 3] [--shapes h24-d128-32k h48-d64-32k]

Each row calls one op back to back for --seconds (a sync every 10 calls) while nvidia-smi samples
clock, power and the throttle reasons every 50 ms. FLOP counts the work the op is asked for:
sparse_attn 4 D x kept keys per query row, cuDNN 4 D N^2 H, block_scores its Q K^T (2 D N^2 H).
Columns: ms per call, TF/s, the median SM clock and power of the samples above 200 W, FLOP per
clock and SM (TF/s over clock x SMs: the work a cycle does, whatever the clock), and joules per
PFLOP (power over TF/s: the work a joule does; at the power limit, time = energy / limit).
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402
import smi  # noqa: E402
from bench_kernels import effective_flops, random_block_index  # noqa: E402

import adaspa_ext as A  # noqa: E402
from adaspa_ext import baselines  # noqa: E402
from adaspa_ext.presets import KERNEL_BENCH_SHAPES  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [s[0] for s in KERNEL_BENCH_SHAPES]
    ap.add_argument("--shapes", nargs="+", default=["h24-d128-32k", "h48-d64-32k"], choices=names)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--density", type=float, default=0.1)
    args = ap.parse_args()
    torch.manual_seed(0)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    limit = subprocess.run(["nvidia-smi", "--query-gpu=power.limit", "--format=csv,noheader"],
                           capture_output=True, text=True).stdout.strip()
    print(common.header("op_power: sustained runs with the SM clock and power sampled",
                        f"bf16, random q/k/v, power limit {limit}, {sms} SMs, {args.seconds:g} s a row,"
                        f" kernel path {os.environ.get('ADASPA_KERNEL_PATH', 'auto')}"))
    print(f"{'shape':>13} {'op':>22} {'ms':>8} {'TF/s':>6} {'MHz':>5} {'W':>4} {'FLOP/clk/SM':>11} "
          f"{'J/PFLOP':>7}  throttle")
    for name, b, h, d, n in KERNEL_BENCH_SHAPES:
        if name not in args.shapes:
            continue
        q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        _, lse, _ = A.attn_search(q, k, v, 128)
        rows = [("cudnn dense", lambda: baselines.sdpa(q, k, v, "cudnn"), 4.0 * b * h * n * n * d)]
        for bs in (64, 128):
            mk = math.ceil(n / bs)
            for dens in (args.density, 1.0):
                idx = random_block_index(b, h, mk, mk, max(1, round(dens * mk)), q.device)
                rows.append((f"sparse bs{bs} {dens:g}", lambda idx=idx, bs=bs: A.sparse_attn(q, k, v, idx, bs),
                             effective_flops(idx, n, n, bs, d)))
        rows.append(("block_scores bs128", lambda: A.block_scores(q, k, lse, 128), 2.0 * b * h * n * n * d))
        rows.append(("cudnn dense (again)", rows[0][1], rows[0][2]))
        for label, fn, flops in rows:
            ms, samples = smi.sustained(fn, args.seconds)
            busy = smi.busy(samples)
            mhz, watts = smi.median(s[0] for s in busy), smi.median(s[1] for s in busy)
            tfs = flops / ms / 1e9
            reasons = ",".join(sorted({s[2] for s in busy}))
            print(f"{name:>13} {label:>22} {ms:8.3f} {tfs:6.0f} {mhz:5.0f} {watts:4.0f} "
                  f"{tfs * 1e6 / (mhz * sms):11.0f} {watts / tfs * 1e3:7.0f}  {reasons}", flush=True)
        del q, k, v, lse


if __name__ == "__main__":
    main()
