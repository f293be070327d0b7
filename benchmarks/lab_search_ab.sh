#!/usr/bin/env bash
# A / B of the one-pass hopper attn_search between two kernel_lab binaries (built here by
# kernel_lab.sh for 90a, carried to the device), interleaved ROUNDS times at one shape, then one
# Nsight Compute profile each of B's kernels named in PROFILES ("name:regex" on mangled names;
# default: the one-pass search as the op runs it and the dense flash pass of the two-pass
# search), as $OUT/search_profile_NAME.txt.
# Usage: bash benchmarks/lab_search_ab.sh BIN_A BIN_B [D=128] [BS=64] [N=32768] [H=24]
set -uo pipefail
a=$1; b=$2; d=${3:-128}; bs=${4:-64}; n=${5:-32768}; h=${6:-24}
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export LAB_HOPPER=1 LAB_GAUSS=1 LAB_SEARCH=1 LAB_NOWIDE=1
for r in $(seq "${ROUNDS:-2}"); do
  for bin in "$a" "$b"; do
    timeout 120 "$bin" "$d" "$bs" "$n" "$h" 10 0.2 2>&1 | grep "attn_search" | sed "s|^|r$r $(basename "$bin"): |; s/  */ /g"
  done
done
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || { echo "no ncu"; exit 1; }
# FlashSparseTraits' last arguments in the mangled names: dense, lazy, score block
profiles=${PROFILES:-"onepass:ELb1ELb1ELi${bs}EE dense:ELb1ELb0ELi0EE"}
for what in $profiles; do
  name=${what%%:*}; re=${what#*:}
  txt="$OUT/search_profile_$name.txt"
  timeout 150 "$ncu" --clock-control none --kernel-name-base mangled -k "regex:$re" --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section MemoryWorkloadAnalysis \
    --section InstructionStats "$b" "$d" "$bs" "$n" "$h" 1 0.2 > "$txt" 2>&1
  echo "ncu $name: rc $?"
  grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|Issue Slots Busy|No Eligible|Executed Ipc A" "$txt" \
    | sed "s/^/  $name: /; s/  */ /g" | head -10
done
