#!/usr/bin/env bash
# Nsight Compute profile of the sm_90a kernels in a kernel_lab binary (built here by kernel_lab.sh
# for 90a, carried to the device): first a plain timed run of the shape (no profiler), then one
# launch of each kernel under ncu: the block-64 sparse kernel (wide key tiles), the block-128
# sparse kernel, attn_search's dense flash launch, the score kernel, the block-128 sparse kernel
# with lazy rescaling of O (D 128 and D 64), and at head dim 64 the block-64 and block-128 sparse
# kernels. Writes one text file per kernel (eight: the device tool brings back at most eight
# files), $OUT/lab_profile_NAME.txt: ncu's log, its details page and its raw page (the .ncu-rep
# stays in /tmp); prints the headline lines.
# Usage: bash benchmarks/lab_profile.sh BINARY [N=32768] [H=24] [DENSITY=0.2]
set -uo pipefail
bin=$1; n=${2:-32768}; h=${3:-24}; dens=${4:-0.2}
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export LAB_HOPPER=1 LAB_GAUSS=1
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
# correctness first, on lengths whose tile counts (1, 8, 33 key tiles of 128) take both tails of
# the score loop; the search rows check scores against a float64 reference
for cfg in "128 64" "64 128"; do
  for len in 64 1000 4097; do
    LAB_SEARCH=1 timeout 30 "$bin" $cfg $len 2 1 0.5 > /tmp/lab_check.txt 2>&1 \
      || { echo "FAILED/TIMEOUT ($?): D/bs $cfg N $len"; cat /tmp/lab_check.txt; }
  done
done
echo "correctness runs done"
LAB_SEARCH=1 timeout 60 "$bin" 128 64 "$n" "$h" 10 "$dens" || echo "FAILED/TIMEOUT ($?): timed run bs 64"
timeout 60 "$bin" 128 128 "$n" "$h" 10 "$dens" || echo "FAILED/TIMEOUT ($?): timed run bs 128"
for bs in 64 128; do timeout 60 "$bin" 64 $bs "$n" $((2 * h)) 10 "$dens" || echo "FAILED/TIMEOUT ($?): D 64 bs $bs"; done
[ -n "$ncu" ] || { echo "no ncu"; exit 1; }
sections=(--section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats
          --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis --section InstructionStats)
# iters 1: each kernel runs once for the check, 3 warm-up and 1 timed launches; the 4th is profiled
# (SKIP launches of the kernel skipped, default 3).
prof() {  # prof NAME REGEX ARGS...
  local name=$1 re=$2; shift 2
  local txt="$OUT/lab_profile_$name.txt"
  timeout 120 "$ncu" --clock-control none -k "regex:$re" --launch-skip "${SKIP:-3}" --launch-count 1 "${sections[@]}" \
    -f -o "/tmp/lab_profile_$name" "$bin" "$@" > "$txt" 2>&1
  echo "ncu $name: rc $?"
  "$ncu" --import "/tmp/lab_profile_$name.ncu-rep" --page details >> "$txt" 2>&1
  "$ncu" --import "/tmp/lab_profile_$name.ncu-rep" --page raw >> "$txt" 2>&1
  grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|Registers Per Thread|Achieved Occupancy|Warp Cycles Per Issued|No Eligible" \
    "$txt" | sed "s/^/  $name: /" | head -12
}
prof wide64 flash_wide_sm90_kernel 128 64 "$n" "$h" 1 "$dens"
prof sparse128 flash_sm90_kernel 128 128 "$n" "$h" 1 "$dens"
LAB_SEARCH=1 prof score score_sm90_kernel 128 64 "$n" "$h" 1 "$dens"
LAB_SEARCH=1 prof dense flash_sm90_kernel 128 64 "$n" "$h" 1 "$dens"
# the lazily rescaling sparse kernel (row "sm90 lr") at block 128, D 128 and D 64: after the
# plain kernel's 5 launches (check 1, warm-up 3, timed 1)
SKIP=8 prof lr128 flash_sm90_kernel 128 128 "$n" "$h" 1 "$dens"
SKIP=8 prof lrd64bs128 flash_sm90_kernel 64 128 "$n" $((2 * h)) 1 "$dens"
# head dim 64 (twice the heads): the sparse kernels at block 64 (64-wide tiles) and 128
prof d64bs64 flash_sm90_kernel 64 64 "$n" $((2 * h)) 1 "$dens"
prof d64bs128 flash_sm90_kernel 64 128 "$n" $((2 * h)) 1 "$dens"
