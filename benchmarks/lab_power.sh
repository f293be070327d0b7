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
here=$(dirname "$0")
sample() {  # sample PHASE: start sampling into $OUT/smi_PHASE.txt (benchmarks/smi.py), print the sampler's pid
  python3 "$here/smi.py" sample > "$OUT/smi_$1.txt" & echo $!
}
rows() { grep -E "  sm90" "$1" | sed -E 's/.*density=([0-9.]+).*  (sm90([a-z0-9 ]*[a-z0-9])?) +([0-9.]+) ms +([0-9.]+) TF.*/\1  \2  \4 ms  \5 TF\/s/'; }
if python3 -c "import torch" 2>/dev/null; then
  python3 - "$h" "$n" "$d" "$here" "$OUT/smi_cudnn.txt" <<'PY' | tee "$OUT/cudnn.txt"
import sys, torch
from torch.nn.attention import sdpa_kernel, SDPBackend
h, n, d = map(int, sys.argv[1:4])
sys.path.insert(0, sys.argv[4])
import smi
q, k, v = [torch.randn(1, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    ms, _ = smi.sustained(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), 4, sys.argv[5])
print(f"cudnn dense {ms:.3f} ms/call, {4 * h * n * n * d / ms / 1e9:.0f} TF/s (4 s sustained)")
PY
  sleep 2
fi
pid=$(sample burst); timeout 120 "$bin" "$d" "$bs" "$n" "$h" 10 "$dens" > "$OUT/burst.txt" 2>&1; kill "$pid"
echo "burst (10 launches a row)"; rows "$OUT/burst.txt"
sleep 2
pid=$(sample sustained); timeout 500 "$bin" "$d" "$bs" "$n" "$h" "$iters" "$dens" > "$OUT/sustained.txt" 2>&1; kill "$pid"
echo "sustained ($iters launches a row)"; rows "$OUT/sustained.txt"
for phase in cudnn burst sustained; do
  [ -s "$OUT/smi_$phase.txt" ] || continue
  python3 "$here/smi.py" summary "$OUT/smi_$phase.txt" "$phase"
done
