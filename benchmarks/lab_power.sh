#!/usr/bin/env bash
# Burst and sustained timings of a kernel_lab binary, with the SM clock and the board power
# sampled while they run (and, for comparison, while cuDNN's dense attention runs if torch is
# there). An H100 / H200 holds its power limit (700 W on the H200 SXM) by lowering its clock: a
# run of a few launches ends before the cap bites (burst: boost clocks), hundreds of launches run
# at the cap (sustained), which is where bench_kernels.py, the 50-step schedule and real models
# run. A change that saves cycles but not energy shows in the first and not in the second.
# Usage (device): bash benchmarks/lab_power.sh BIN D BS N H DENSITY
#   burst:     BIN D BS N H 10 DENSITY, then sustained: BIN D BS N H ITERS DENSITY with ITERS
#   launches of each row (SUSTAIN_ITERS, default 1000; about 2 s a row at 32K density 0.1).
# Writes $OUT/smi_<phase>.txt (50 ms samples) and $OUT/<phase>.txt, prints the timing rows and
# per phase the median clock, the median power and the throttle reasons seen.
set -uo pipefail
bin=$1; d=$2; bs=$3; n=$4; h=$5; dens=$6
iters=${SUSTAIN_ITERS:-1000}
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export LAB_HOPPER=1 LAB_GAUSS=1
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader
sample() {  # sample PHASE: start sampling into $OUT/smi_PHASE.txt, print the sampler's pid
  nvidia-smi --query-gpu=clocks.sm,power.draw,clocks_event_reasons.active --format=csv,noheader,nounits \
    -lms 50 > "$OUT/smi_$1.txt" & echo $!
}
rows() { grep -E "  sm90" "$1" | sed -E 's/.*density=([0-9.]+).*  (sm90([a-z0-9 ]*[a-z0-9])?) +([0-9.]+) ms +([0-9.]+) TF.*/\1  \2  \4 ms  \5 TF\/s/'; }
if python3 -c "import torch" 2>/dev/null; then
  pid=$(sample cudnn)
  python3 - "$h" "$n" "$d" <<'PY' | tee "$OUT/cudnn.txt"
import sys, time, torch
from torch.nn.attention import sdpa_kernel, SDPBackend
h, n, d = map(int, sys.argv[1:])
q, k, v = [torch.randn(1, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    f = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)
    for _ in range(3): f()
    torch.cuda.synchronize(); t = time.time(); calls = 0
    while time.time() - t < 4:
        for _ in range(10): f()
        torch.cuda.synchronize(); calls += 10
    dt = (time.time() - t) / calls
print(f"cudnn dense {dt * 1e3:.3f} ms/call, {4 * h * n * n * d / dt / 1e12:.0f} TF/s (4 s sustained)")
PY
  kill "$pid"; sleep 2
fi
pid=$(sample burst); timeout 120 "$bin" "$d" "$bs" "$n" "$h" 10 "$dens" > "$OUT/burst.txt" 2>&1; kill "$pid"
echo "burst (10 launches a row)"; rows "$OUT/burst.txt"
sleep 2
pid=$(sample sustained); timeout 500 "$bin" "$d" "$bs" "$n" "$h" "$iters" "$dens" > "$OUT/sustained.txt" 2>&1; kill "$pid"
echo "sustained ($iters launches a row)"; rows "$OUT/sustained.txt"
for phase in cudnn burst sustained; do
  [ -s "$OUT/smi_$phase.txt" ] || continue
  python3 - "$OUT/smi_$phase.txt" "$phase" <<'PY'
import sys
rows = [[x.strip() for x in line.split(",")] for line in open(sys.argv[1]) if line.count(",") == 2]
busy = [r for r in rows if r[1] not in ("[N/A]", "") and float(r[1]) > 200] or rows
clock = sorted(float(r[0]) for r in busy)
power = sorted(float(r[1]) for r in busy)
print(f"{sys.argv[2]}: {len(busy)} samples over 200 W; SM clock MHz min / median / max "
      f"{clock[0]:.0f} / {clock[len(clock) // 2]:.0f} / {clock[-1]:.0f}; power W median {power[len(power) // 2]:.0f} "
      f"max {power[-1]:.0f}; throttle reasons {sorted(set(r[2] for r in busy))}")
PY
done
