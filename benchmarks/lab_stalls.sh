#!/usr/bin/env bash
# Where the warps of one sm_90a kernel wait: Nsight Compute's per-instruction warp-state samples
# (SourceCounters) for one launch in a kernel_lab binary (built here by kernel_lab.sh for 90a,
# carried to the device). Writes $OUT/stalls_NAME.csv (ncu's source page, SASS) and prints the
# instructions with the most samples, with their leading stall reasons.
# Usage: bash benchmarks/lab_stalls.sh BINARY NAME KERNEL_REGEX SKIP LAB_ARGS...
#   e.g. bash benchmarks/lab_stalls.sh .lab/lab22 d64bs128 flash_sm90_kernel 3 64 128 32768 48 1 0.2
set -uo pipefail
bin=$1; name=$2; re=$3; skip=$4; shift 4
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export LAB_HOPPER=1 LAB_GAUSS=1
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || { echo "no ncu"; exit 1; }
rep=/tmp/stalls_$name
timeout 180 "$ncu" --clock-control none -k "regex:$re" --launch-skip "$skip" --launch-count 1 \
  --section WarpStateStats --section SourceCounters --section SpeedOfLight -f -o "$rep" "$bin" "$@" \
  > "$OUT/stalls_${name}_log.txt" 2>&1
echo "ncu $name: rc $?"
"$ncu" --import "$rep.ncu-rep" --page source --print-source sass --csv > "$OUT/stalls_$name.csv" 2>&1 \
  || { echo "source page failed:"; head -5 "$OUT/stalls_$name.csv"; }
python3 benchmarks/stall_top.py "$OUT/stalls_$name.csv" 45
