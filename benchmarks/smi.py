"""SM clock, board power and throttle reasons sampled by nvidia-smi every 50 ms while a GPU job
runs (benchmarks/op_power.py, benchmarks/lab_power.sh).

  python benchmarks/smi.py sample > FILE        sample into FILE until killed (becomes nvidia-smi)
  python benchmarks/smi.py summary FILE PHASE   one line: the samples above 200 W, SM clock min /
                                                median / max, power median / max, throttle reasons
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

COMMAND = ["nvidia-smi", "--query-gpu=clocks.sm,power.draw,clocks_event_reasons.active",
           "--format=csv,noheader,nounits", "-lms", "50"]


def read(path):
    """Samples [(MHz, W, reasons)] of a sample file; lines without numbers ([N/A]) are skipped."""
    samples = []
    for line in open(path):
        r = [x.strip() for x in line.split(",")]
        if len(r) != 3:
            continue
        try:
            samples.append((float(r[0]), float(r[1]), r[2]))
        except ValueError:
            continue
    return samples


def busy(samples):
    """The samples above 200 W (the GPU at work), or all of them if none is."""
    return [s for s in samples if s[1] > 200] or samples


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if v else float("nan")


def summary(samples, phase):
    b = busy(samples)
    if not b:
        return f"{phase}: no samples"
    clock = sorted(s[0] for s in b)
    power = [s[1] for s in b]
    return (f"{phase}: {len(b)} samples over 200 W; SM clock MHz min / median / max {clock[0]:.0f} / "
            f"{median(clock):.0f} / {clock[-1]:.0f}; power W median {median(power):.0f} max {max(power):.0f}; "
            f"throttle reasons {sorted(set(s[2] for s in b))}")


def sustained(fn, seconds, path=None):
    """(ms per call, samples) of fn called back to back for `seconds` (a sync every 10 calls,
    after 3 warm-up calls), sampled into `path` (a temporary file if None)."""
    import torch
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        path = path or os.path.join(tmp, "smi.csv")
        with open(path, "w") as log:
            smi = subprocess.Popen(COMMAND, stdout=log)
            t, calls = time.time(), 0
            while time.time() - t < seconds:
                for _ in range(10):
                    fn()
                torch.cuda.synchronize()
                calls += 10
            dt = (time.time() - t) / calls
            smi.terminate()
            smi.wait()
        return dt * 1e3, read(path)


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "sample":
        os.execvp(COMMAND[0], COMMAND)
    elif len(sys.argv) == 4 and sys.argv[1] == "summary":
        print(summary(read(sys.argv[2]), sys.argv[3]))
    else:
        sys.exit(__doc__)
