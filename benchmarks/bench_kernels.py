"""Kernel benchmark: sparse_attn vs density, the search kernels and selection, against cuDNN and
FlashAttention-2 dense attention (torch SDPA backends) and FlexAttention on the same block mask.

Usage:
  python benchmarks/bench_kernels.py [--shapes h24-d128-32k hunyuan-720p h48-d64-32k]
      [--densities 0.05 0.1 0.2 0.5 1.0] [--blocks 64 128] [--path portable hopper] [--no-flex] [--csv out.csv]

--path: the kernel paths to time (ADASPA_KERNEL_PATH per path); a path without kernels for a
(dtype, head dim, block size) or for this device is skipped with a line saying so.

Effective TF/s counts only the work asked for: 4 * sum over query rows of (kept key tokens) * D.
Ratios are measured in the same process on the same card. The card runs at its power limit here
(H100: ~700 W throughout, SM clock 1.5-1.85 GHz), so each kernel is timed in its own steady state:
>= 300 ms of calls before, >= 600 ms timed; FA2 dense is timed before and after a shape's sparse
points and vs_fa2 uses the mean.
"""
from __future__ import annotations

import argparse
import math
import sys
import traceback

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402

import adaspa_ext as A  # noqa: E402
from adaspa_ext import baselines, ops  # noqa: E402
from adaspa_ext.presets import KERNEL_BENCH_SHAPES  # noqa: E402


def adaptive_time(fn, warm_ms=300.0, budget_ms=600.0):
    """Median ms after the card settled on fn: the power limit sets the clock, and one warm-up
    call after a different kernel leaves single timings up to ~10 % off."""
    t0 = common.time_ms(fn, warmup=1, reps=1)
    warm = int(max(1, min(300, warm_ms / max(t0, 1e-3))))
    reps = int(max(3, min(300, budget_ms / max(t0, 1e-3))))
    return common.time_ms(fn, warmup=warm, reps=reps)


def random_block_index(b, h, mq, mk, n, device):
    """Per row n distinct random key blocks, ascending; width n."""
    if n >= mk:
        return torch.arange(mk, device=device, dtype=torch.int32).expand(b, h, mq, mk).contiguous()
    return torch.rand(b, h, mq, mk, device=device).topk(n, dim=-1).indices.sort(dim=-1).values.int()


def effective_flops(idx, nq, nk, bs, d):
    """4 * D * sum over query rows of kept key tokens."""
    b, h, mq, _ = idx.shape
    valid = idx >= 0
    keys = torch.where(valid, torch.clamp(nk - idx.long() * bs, max=bs), torch.zeros_like(idx, dtype=torch.long))
    rows = torch.clamp(nq - torch.arange(mq, device=idx.device) * bs, max=bs)
    return 4.0 * d * float((keys.sum(-1) * rows).sum())


def flex_runner(q, k, v, idx, bs):
    bm = baselines.flex_block_mask(idx, q.shape[2], k.shape[2], bs)
    return lambda: baselines.flex_attention(q, k, v, bm, bs)


def skip_reason(path, op, d, bs):
    """Why op cannot run its bf16 (d, bs) kernels on path here, or None."""
    if path == "hopper" and torch.cuda.get_device_capability() != (9, 0):
        return "the hopper kernels run on compute capability 9.0 only"
    if (path, "bf16", d, bs) not in ops.compiled_tuples(op):
        return f"no {path} kernels compiled for (bf16, D={d}, block {bs})"
    return None


def time_block_size(args, rows, srows, name, path, q, k, v, b, h, d, n, bs, t_cudnn):
    """The sparse densities, attn_search, block_scores and select_blocks at one block size on one path
    (ADASPA_KERNEL_PATH set by the caller); an op without kernels there is skipped with a line."""
    skip = {op: skip_reason(path, op, d, bs) for op in ("sparse_attn", "attn_search", "block_scores")}
    for op, why in skip.items():
        if why:
            print(f"  path={path} bs={bs} {op}: skipped, {why}", flush=True)
    dev = q.device
    mq = mk = math.ceil(n / bs)
    t_at = {}
    for dens in args.densities if not skip["sparse_attn"] else []:
        nb = max(1, round(dens * mk))
        idx = random_block_index(b, h, mq, mk, nb, dev)
        flops = effective_flops(idx, n, n, bs, d)
        t = adaptive_time(lambda: A.sparse_attn(q, k, v, idx, bs))
        t_at[dens] = t
        r = dict(shape=name, path=path, block=bs, density=dens, ms=t, tflops=flops / t / 1e9, x_cudnn=t / t_cudnn)
        if not args.no_flex:
            try:
                tf = adaptive_time(flex_runner(q, k, v, idx, bs))
                r.update(flex_ms=tf, flex_tflops=flops / tf / 1e9, vs_flex=tf / t)
            except Exception as e:  # report, keep going
                traceback.print_exc()
                r.update(flex_ms=f"err:{type(e).__name__}")
        rows.append(r)
        print(f"  path={path} bs={bs} density={dens}: {t:.2f} ms {r['tflops']:.0f} TF/s", flush=True)
        del idx
    if skip["attn_search"] and skip["block_scores"]:
        return
    t_dense = t_at.get(1.0)
    t_search = None if skip["attn_search"] else adaptive_time(lambda: A.attn_search(q, k, v, bs))
    with ops.use_kernel_path("auto"):  # the inputs of block_scores and select_blocks, from any path
        _, lse, scores = A.attn_search(q, k, v, bs)
    t_scores = None if skip["block_scores"] else adaptive_time(lambda: A.block_scores(q, k, lse, bs))
    keep0 = torch.full((h,), round(0.2 * mk), dtype=torch.int32, device=dev)
    keep1 = torch.full((h,), round(0.3 * mk), dtype=torch.int32, device=dev)
    t_select = adaptive_time(lambda: (A.select_blocks(scores, keep0), A.select_blocks(scores, keep1)))
    lin = t_at[0.2] / t_at[1.0] if 0.2 in t_at and 1.0 in t_at else None
    ratio = lambda a, b: a / b if a and b else None  # noqa: E731
    srows.append(dict(shape=name, path=path, block=bs, search_ms=t_search,
                      search_x_sparse1=ratio(t_search, t_dense), search_x_cudnn=ratio(t_search, t_cudnn),
                      scores_ms=t_scores, scores_x_sparse1=ratio(t_scores, t_dense),
                      scores_x_cudnn=ratio(t_scores, t_cudnn), select2_ms=t_select,
                      select2_pct_cudnn=100 * t_select / t_cudnn, t02_over_t1=lin))
    del lse, scores


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [s[0] for s in KERNEL_BENCH_SHAPES]
    ap.add_argument("--shapes", nargs="+", default=names, choices=names)
    ap.add_argument("--densities", nargs="+", type=float, default=[0.05, 0.1, 0.2, 0.5, 1.0])
    ap.add_argument("--blocks", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--path", nargs="+", default=list(ops.KERNEL_PATHS), choices=ops.KERNEL_PATHS)
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--csv")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = "cuda"
    print(common.header("bench_kernels: sparse_attn / attn_search / block_scores / select_blocks", "bf16, random q/k/v"))
    rows, srows = [], []
    for name, b, h, d, n in KERNEL_BENCH_SHAPES:
        if name not in args.shapes:
            continue
        q, k, v = (torch.randn(b, h, n, d, device=dev, dtype=torch.bfloat16) for _ in range(3))
        dense_flops = 4.0 * b * h * n * n * d
        t_cudnn = adaptive_time(lambda: baselines.sdpa(q, k, v, "cudnn"))
        t_fa2 = adaptive_time(lambda: baselines.sdpa(q, k, v, "flash"))
        tf_cudnn, tf_fa2 = dense_flops / t_cudnn / 1e9, dense_flops / t_fa2 / 1e9
        print(f"# {name}: B={b} H={h} D={d} N={n}: cuDNN dense {t_cudnn:.2f} ms ({tf_cudnn:.0f} TF/s), "
              f"FA2 dense {t_fa2:.2f} ms ({tf_fa2:.0f} TF/s)", flush=True)
        first_row = len(rows)
        for path, bs in ((path, bs) for path in args.path for bs in args.blocks):
            with ops.use_kernel_path(path):
                time_block_size(args, rows, srows, name, path, q, k, v, b, h, d, n, bs, t_cudnn)
        t_fa2_after = adaptive_time(lambda: baselines.sdpa(q, k, v, "flash"))
        tf_fa2_mean = dense_flops / (0.5 * (t_fa2 + t_fa2_after)) / 1e9
        print(f"# {name}: FA2 dense after the sparse points {t_fa2_after:.2f} ms "
              f"({dense_flops / t_fa2_after / 1e9:.0f} TF/s); vs_fa2 uses the mean, {tf_fa2_mean:.0f} TF/s", flush=True)
        for r in rows[first_row:]:
            r["vs_fa2"] = r["tflops"] / tf_fa2_mean
        del q, k, v
        torch.cuda.empty_cache()
    print()
    print(common.table(rows, [("shape", "s", 13), ("path", "s", 8), ("block", "d", 5), ("density", ".2f", 7), ("ms", ".2f", 8),
                              ("tflops", ".0f", 6), ("x_cudnn", ".3f", 7), ("vs_fa2", ".3f", 6),
                              ("flex_ms", ".2f", 8), ("flex_tflops", ".0f", 11), ("vs_flex", ".2f", 7)]))
    print()
    print(common.table(srows, [("shape", "s", 13), ("path", "s", 8), ("block", "d", 5), ("search_ms", ".2f", 9),
                               ("search_x_sparse1", ".3f", 16), ("search_x_cudnn", ".3f", 14),
                               ("scores_ms", ".2f", 9), ("scores_x_sparse1", ".3f", 16),
                               ("scores_x_cudnn", ".3f", 14), ("select2_ms", ".3f", 10),
                               ("select2_pct_cudnn", ".3f", 17), ("t02_over_t1", ".3f", 11)]))
    if args.csv:
        common.write_csv(args.csv, rows + srows)


if __name__ == "__main__":
    main()
