"""Development A/B of kernel variants picked by an environment variable, in one process: each
variant's block_scores / sparse_attn time beside a cuDNN dense call, and its largest deviation
from the first variant's result.

Usage: python benchmarks/dev_env_variants.py VAR v1 v2 ... [--op block_scores|sparse_attn]
       [--shapes h24-d128-32k h48-d64-32k] [--blocks 64 128] [--density 0.2]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402
from bench_kernels import adaptive_time  # noqa: E402

from adaspa_ext import baselines  # noqa: E402
from adaspa_ext import ops as A  # noqa: E402
from adaspa_ext.presets import KERNEL_BENCH_SHAPES  # noqa: E402


def main():
    names = [s[0] for s in KERNEL_BENCH_SHAPES]
    ap = argparse.ArgumentParser()
    ap.add_argument("var")
    ap.add_argument("values", nargs="+")
    ap.add_argument("--op", default="block_scores", choices=["block_scores", "sparse_attn", "attn_search"])
    ap.add_argument("--shapes", nargs="+", default=["h24-d128-32k", "h48-d64-32k"], choices=names)
    ap.add_argument("--blocks", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--density", type=float, default=0.2)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(common.header(f"dev_env_variants: {args.op} under {args.var}"))
    rows = []
    for name, b, h, d, n in KERNEL_BENCH_SHAPES:
        if name not in args.shapes:
            continue
        q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        t_cudnn = adaptive_time(lambda: baselines.sdpa(q, k, v, "cudnn"))
        for bs in args.blocks:
            _, lse, _ = A.attn_search(q, k, v, bs)
            mq = mk = -(-n // bs)
            keep = max(1, round(args.density * mk))
            idx = torch.rand(b, h, mq, mk, device="cuda").argsort(-1)[..., :keep].sort(-1).values.int()
            call = {"block_scores": lambda: A.block_scores(q, k, lse, bs),
                    "sparse_attn": lambda: A.sparse_attn(q, k, v, idx, bs)[0],
                    "attn_search": lambda: A.attn_search(q, k, v, bs)[2]}[args.op]
            first = None
            for val in args.values:
                os.environ[args.var] = val
                out = call().float()
                first = out if first is None else first
                dev = ((out - first).abs().max() / first.abs().max()).item()
                t = adaptive_time(call)
                rows.append(dict(shape=name, block=bs, variant=val, ms=t, x_cudnn=t / t_cudnn, max_rel_dev=dev))
                print(rows[-1], flush=True)
            os.environ.pop(args.var, None)
    print(common.table(rows, [("shape", "s", 13), ("block", "d", 5), ("variant", "s", 8), ("ms", ".2f", 8),
                              ("x_cudnn", ".3f", 8), ("max_rel_dev", ".1e", 11)]))


if __name__ == "__main__":
    main()
