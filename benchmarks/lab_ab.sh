#!/usr/bin/env bash
# Correctness of kernel_lab binary B, then A / B timings of two kernel_lab binaries (both built
# here by kernel_lab.sh for 90a, carried to the device), interleaved ROUNDS times.
# Checks (each under a time limit): odd lengths, Nq != Nk with messy idx rows, and the same with
# 24 heads, so that the tiles outnumber the CTAs resident on the GPU (more than one wave).
# Timed: H 24 D 128 / H 48 D 64 at N 32768, densities 0.1 0.2 0.5, sparse and search rows;
# prints the timing lines of every row, prefixed with the round and the binary.
# Usage: bash benchmarks/lab_ab.sh BIN_A BIN_B ["D BS" ...]   (default: the four D / block pairs)
set -uo pipefail
a=$1; b=$2; shift 2
cfgs=("$@"); [ ${#cfgs[@]} -gt 0 ] || cfgs=("128 64" "128 128" "64 64" "64 128")
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export LAB_HOPPER=1 LAB_GAUSS=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
fail=0
for cfg in "${cfgs[@]}"; do
  set -- $cfg
  for run in "1000 3 1 0.3 1.0" "4097 2 1 0.3" "4097 24 1 0.3 1.0"; do
    LAB_SEARCH=1 timeout 30 "$b" $1 $2 $run >> "$OUT/lab_ab_check.txt" 2>&1 || { echo "FAILED/TIMEOUT ($?): D/bs $cfg N/H $run"; fail=1; }
  done
  for run in "1000 3 1 0.3 1.0" "4097 24 1 0.5"; do
    LAB_NK=1531 LAB_MESSY=1 timeout 30 "$b" $1 $2 $run >> "$OUT/lab_ab_check.txt" 2>&1 || { echo "FAILED/TIMEOUT ($?): D/bs $cfg N/H $run Nk 1531 messy"; fail=1; }
  done
done
echo "checks done (fail=$fail)"
[ $fail = 0 ] || exit 1
for r in $(seq "${ROUNDS:-2}"); do
  for cfg in "${cfgs[@]}"; do
    set -- $cfg
    h=$([ "$1" = 64 ] && echo 48 || echo 24)
    for bin in "$a" "$b"; do
      LAB_SEARCH=1 timeout 90 "$bin" $1 $2 32768 $h 10 0.1 0.2 0.5 2>&1 | tee -a "$OUT/lab_ab_times.txt" | grep -E " ms " \
        | sed "s|^|r$r $(basename "$bin"): |; s/max_abs_err.*(/(/; s/  */ /g"
    done
  done
done
