#!/usr/bin/env bash
# Run a kernel_lab binary (built here by kernel_lab.sh for 90a) over the benchmark shapes with the
# sm_90a sparse kernels beside the portable one (at block 64 also the wide-key-tile variant, row
# "sm90w"), each configuration under a time limit so a hang cannot eat the session: odd-length
# correctness runs first, the 32K speed shapes only if they passed (at block 64, if they fail
# with sm90w and pass without it, the rest runs without it); then Nq != Nk with messy idx rows
# (-1, duplicates, out of range, empty rows), reported but not gating the 32K run.
# Usage: bash benchmarks/lab_sm90.sh BINARY [ITERS]
set -uo pipefail
bin=$1; iters=${2:-20}
export LAB_HOPPER=1 LAB_GAUSS=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
odd() { timeout 15 "$bin" $1 $2 1000 3 1 0.3 1.0 && timeout 15 "$bin" $1 $2 4097 2 1 0.3; }
for cfg in "128 64 24" "128 128 24" "64 64 48" "64 128 48"; do
  set -- $cfg
  ok=1
  if ! odd $1 $2; then
    ok=0
    if [ "$2" = 64 ] && (export LAB_NOWIDE=1; odd $1 $2); then
      echo "FAILED/TIMEOUT: sm90w at D=$1 bs=$2 odd lengths (the others pass); continuing without sm90w"
      export LAB_NOWIDE=1 ok=1
    fi
  fi
  if [ $ok = 1 ]; then
    LAB_NK=1531 LAB_MESSY=1 timeout 15 "$bin" $1 $2 1000 3 1 0.3 1.0 || echo "FAILED/TIMEOUT ($?): D=$1 bs=$2 Nq 1000 Nk 1531 messy"
    LAB_NK=700 LAB_MESSY=1 timeout 15 "$bin" $1 $2 4097 2 1 0.5 || echo "FAILED/TIMEOUT ($?): D=$1 bs=$2 Nq 4097 Nk 700 messy"
    timeout 60 "$bin" $1 $2 32768 $3 "$iters" 0.1 0.2 0.5 1.0 || echo "FAILED/TIMEOUT ($?): D=$1 bs=$2 32K"
  else
    echo "FAILED/TIMEOUT: D=$1 bs=$2 odd lengths; 32K skipped"
  fi
  unset LAB_NOWIDE
done
