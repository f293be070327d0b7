#!/usr/bin/env bash
# The block-64 union kernel (flash_kernel_sm90_union.h, kernel_lab row "sm90 un") on the device:
# checks (odd lengths, an odd count of query blocks, Nq != Nk with messy idx rows, lists that
# share entries), burst timings against the op's wide kernel (row "sm90w") for random lists and
# lists that keep a share of the neighbouring query block's list (LAB_SHARE), sustained timings
# with clock and power (lab_power.sh), then racecheck and synccheck on a small shape.
# The same runs time the lab's other block-64 rows (the op's kernel "sm90", "sm90 wk2").
# Usage (device): bash benchmarks/lab_union.sh BIN [SHARES="0 0.5 0.9"] [POWER_SHARES="0 0.8"]
#   (TIMED_DS: head dims of the burst timings, default "128 64"; POWER_DENSITIES, default 0.1)
set -uo pipefail
bin=$1; shares=${2:-0 0.5 0.9}; power_shares=${3:-0 0.8}
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export LAB_HOPPER=1 LAB_GAUSS=1
here=$(dirname "$0")
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
fail=0
check() {  # check LABEL ENV... -- ARGS...
  local label=$1; shift
  local envs=(); while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" timeout 60 "$bin" "$@" >> "$OUT/union_check.txt" 2>&1 || { echo "FAILED/TIMEOUT ($?): $label"; fail=1; }
}
for d in 128 64; do
  for sh in 0 0.7 1; do
    check "D $d 1000 x 3 share $sh" LAB_SHARE=$sh -- $d 64 1000 3 1 0.05 0.3 1.0
    check "D $d 4097 x 2 share $sh" LAB_SHARE=$sh -- $d 64 4097 2 1 0.3
    check "D $d 4097 x 24 share $sh" LAB_SHARE=$sh -- $d 64 4097 24 1 0.3 1.0
    check "D $d Nk 1531 messy share $sh" LAB_SHARE=$sh LAB_NK=1531 LAB_MESSY=1 -- $d 64 1000 24 1 0.3 1.0
  done
done
grep -E "sm90 un" "$OUT/union_check.txt" | awk '{for (i = 1; i <= NF; ++i) if ($i == "max_abs_err") print $(i + 1)}' \
  | sort -g | tail -1 | sed 's/^/largest max_abs_err of the union row: /'
echo "checks done (fail=$fail)"
rows() { grep -E "  sm90(w| un| wk2)? " "$1" | sed -E 's/.*density=([0-9.]+).*  (sm90([a-z0-9 ]*[a-z0-9])?) +([0-9.]+) ms +([0-9.]+) TF.*/\1  \2  \4 ms  \5 TF\/s/'; }
for d in ${TIMED_DS:-128 64}; do
  h=$((d == 128 ? 24 : 48))
  for sh in $shares; do
    LAB_SHARE=$sh timeout 120 "$bin" $d 64 32768 $h 10 0.1 0.2 0.5 > "$OUT/union_d${d}_share$sh.txt" 2>&1
    echo "D $d, share $sh (burst, 10 launches; sm90: the op's kernel)"
    rows "$OUT/union_d${d}_share$sh.txt"
  done
done
for sh in $power_shares; do
  for dens in ${POWER_DENSITIES:-0.1}; do
    echo "sustained, D 128, density $dens, share $sh"
    LAB_SHARE=$sh OUT="$OUT/power_share${sh}_$dens" bash "$here/lab_power.sh" "$bin" 128 64 32768 24 $dens 2>&1 | tail -14
  done
done
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$san" ]; then
  for tool in racecheck synccheck; do
    LAB_SHARE=0.7 timeout 150 "$san" --tool "$tool" "$bin" 128 64 1000 2 1 0.3 > "$OUT/union_$tool.txt" 2>&1
    echo "$tool rc $?: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/union_$tool.txt" | tr '\n' ' ')"
  done
fi
exit $fail
