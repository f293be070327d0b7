"""CPU benchmark: the adaspa ops against torch's CPU SDPA on the same shapes, and the 50-step
schedule against dense SDPA (the demo's workload).

Usage:
  python benchmarks/bench_cpu.py [--shapes demo-cpu h4-d64-8k] [--dtype float32] [--density 0.2]
      [--reps 7] [--schedule demo-cpu cpu-8k] [--schedule-runs 3] [--threads N] [--csv out.csv]

Per shape, every rep times each call once, in turn (SDPA, sparse_attn at the given density,
attn_search, block_scores, select_blocks), so a slow spell of a shared machine hits all of them;
the table gives the median and min over reps (host clock) and ratios of medians. `--schedule`
runs the demo's schedule (adaspa_ext.demo.run_schedule: warm-up 10, searches at 10 and 30,
s = 0.8) for one layer of each named workload `--schedule-runs` times and prints per phase the
median over runs of the totals against dense SDPA, and the totals of per-call minima over runs.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402

import adaspa_ext as A  # noqa: E402
from adaspa_ext.config import AdaSpaConfig  # noqa: E402
from adaspa_ext.demo import run_schedule, summarize  # noqa: E402
from adaspa_ext.presets import PRESETS, Preset  # noqa: E402

# (name, B, H, D, N); demo-cpu is the demo's default preset (video + text tokens).
SHAPES = {
    "demo-cpu": (1, PRESETS["demo-cpu"].heads, PRESETS["demo-cpu"].head_dim, PRESETS["demo-cpu"].tokens),
    "h4-d64-8k": (1, 4, 64, 8192),
    "h2-d128-8k": (1, 2, 128, 8192),
}
# Schedule workloads: the demo preset and an 8K-token one (8 x 32 x 32 video + 32 text tokens,
# last, like HunyuanVideo).
SCHEDULES = {"demo-cpu": PRESETS["demo-cpu"], "cpu-8k": Preset("cpu-8k", 1, 4, 64, 8, 32, 32, 32, False, 1)}


def random_idx(b, h, mq, mk, n, gen):
    top = torch.rand(b, h, mq, mk, generator=gen).topk(n, dim=-1).indices.sort(dim=-1).values
    return top.int().contiguous()


def bench_shape(name, dtype, density, reps, bs=64):
    b, h, d, n = SHAPES[name]
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, generator=gen).to(dtype) for _ in range(3))
    mq = mk = math.ceil(n / bs)
    width = max(1, round(density * mk))
    idx = random_idx(b, h, mq, mk, width, gen)
    _, lse, scores = A.attn_search(q, k, v, bs)
    keep = torch.full((h,), width, dtype=torch.int32)
    calls = {
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
        "sparse": lambda: A.sparse_attn(q, k, v, idx, bs),
        "search": lambda: A.attn_search(q, k, v, bs),
        "scores": lambda: A.block_scores(q, k, lse, bs),
        "select": lambda: A.select_blocks(scores, keep),
    }
    for fn in calls.values():  # warm-up
        fn()
    times = {key: [] for key in calls}
    for _ in range(reps):
        for key, fn in calls.items():
            t = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t) * 1e3)
    med = {key: statistics.median(ts) for key, ts in times.items()}
    row = dict(shape=name, B=b, H=h, D=d, N=n, dtype=str(dtype).replace("torch.", ""), density=width / mk)
    for key in calls:
        row[f"{key}_ms"] = med[key]
        row[f"{key}_min"] = min(times[key])
    row["sdpa/sparse"] = med["sdpa"] / med["sparse"]
    row["search/sdpa"] = med["search"] / med["sdpa"]
    row["scores/sdpa"] = med["scores"] / med["sdpa"]
    row["select/sdpa"] = med["select"] / med["sdpa"]
    return row


def bench_schedule(name, dtype, runs):
    """The schedule `runs` times over (identical inputs and patterns each run). Per phase: the
    median over runs of its total, and the total of each call's min over runs (the time without
    the stalls a shared machine adds at random)."""
    preset = SCHEDULES[name]
    cfg = AdaSpaConfig(sparsity=0.8, block_size=64)
    all_records = [run_schedule(preset, cfg, 1, "cpu", dtype, progress=False)[0] for _ in range(runs)]
    rows = []
    for phase in ("dense", "search_fused", "search_cached", "sparse", "total"):
        pick = [[r for r in recs if phase == "total" or r["phase"] == phase] for recs in all_records]
        if not pick[0]:
            continue
        tot = [(sum(r["ms"] for r in rs), sum(r["dense_ms"] for r in rs)) for rs in pick]
        ada_min = sum(min(rs[i]["ms"] for rs in pick) for i in range(len(pick[0])))
        dense_min = sum(min(rs[i]["dense_ms"] for rs in pick) for i in range(len(pick[0])))
        rows.append(dict(workload=name, N=preset.tokens, phase=phase, calls=len(pick[0]),
                         adaspa_ms=statistics.median(a for a, _ in tot), dense_ms=statistics.median(d for _, d in tot),
                         speedup=statistics.median(d / a for a, d in tot), adaspa_min=ada_min, dense_min=dense_min,
                         speedup_min=dense_min / ada_min, err=statistics.mean(r["err"] for r in pick[0])))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="*", default=["demo-cpu", "h4-d64-8k"], choices=sorted(SHAPES))
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--density", type=float, default=0.2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--schedule", nargs="*", default=[], choices=sorted(SCHEDULES))
    ap.add_argument("--schedule-runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--csv")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    print(common.header("bench_cpu: adaspa CPU kernels vs torch CPU SDPA",
                        f"{torch.get_num_threads()} threads, ATen CPU capability "
                        f"{torch.backends.cpu.get_cpu_capability()}, {a.dtype}, block 64, reps {a.reps}"))
    rows = [bench_shape(s, dtype, a.density, a.reps) for s in a.shapes]
    if rows:
        print(common.table(rows, [("shape", "s", 10), ("N", "d", 5), ("density", ".3f", 7),
                                  ("sdpa_ms", ".1f", 8), ("sdpa_min", ".1f", 8),
                                  ("sparse_ms", ".1f", 9), ("sparse_min", ".1f", 10), ("sdpa/sparse", ".2f", 11),
                                  ("search_ms", ".1f", 9), ("search/sdpa", ".2f", 11),
                                  ("scores_ms", ".1f", 9), ("scores/sdpa", ".2f", 11),
                                  ("select_ms", ".2f", 9), ("select/sdpa", ".3f", 11)]))
    sched = [r for name in a.schedule for r in bench_schedule(name, dtype, a.schedule_runs)]
    if sched:
        print()
        print(common.table(sched, [("workload", "s", 9), ("N", "d", 5), ("phase", "s", 13), ("calls", "d", 5),
                                   ("adaspa_ms", ".1f", 10), ("dense_ms", ".1f", 10), ("speedup", ".2f", 7),
                                   ("adaspa_min", ".1f", 10), ("dense_min", ".1f", 10), ("speedup_min", ".2f", 11),
                                   ("err", ".4f", 7)]))
    if a.csv:
        common.write_csv(a.csv, rows + sched)


if __name__ == "__main__":
    main()
