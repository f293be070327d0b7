"""Shared benchmark plumbing: header, CUDA-event timing, fixed-width table, CSV."""
from __future__ import annotations

import csv
import os
import platform
import statistics
import subprocess
import sys

import torch


def commit() -> str:
    if os.environ.get("ADASPA_COMMIT"):
        return os.environ["ADASPA_COMMIT"]
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except Exception:
        return "unknown"


def header(title: str, extra: str = "") -> str:
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    lines = [f"# {title}",
             f"# device: {dev} | torch {torch.__version__} | CUDA {torch.version.cuda} | "
             f"python {sys.version.split()[0]} | commit {commit()}"]
    if extra:
        lines.append(f"# {extra}")
    return "\n".join(lines)


def time_ms(fn, warmup: int = 2, reps: int = 10) -> float:
    """Median milliseconds of fn() over reps, timed with CUDA events (host clock on CPU)."""
    if torch.cuda.is_available():
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return statistics.median(times)
    import time
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def fmt(v, spec: str) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    return format(v, spec)


def table(rows: list[dict], cols: list[tuple[str, str, int]]) -> str:
    """cols: (key, format spec, width)."""
    out = ["  ".join(k.rjust(w) for k, _, w in cols)]
    out.append("  ".join("-" * w for _, _, w in cols))
    for r in rows:
        out.append("  ".join(fmt(r.get(k), spec).rjust(w) for k, spec, w in cols))
    return "\n".join(out)


def write_csv(path: str, rows: list[dict]) -> None:
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
