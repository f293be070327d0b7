#!/usr/bin/env bash
# Run a kernel_lab binary (built here by kernel_lab.sh for 90a) over the benchmark shapes with the
# sm_90a sparse kernel beside the portable one, each configuration under a time limit so a hang
# cannot eat the session: an odd-length correctness run first, the 32K speed shapes only if it
# passed. Usage: bash benchmarks/lab_sm90.sh BINARY [ITERS]
set -uo pipefail
bin=$1; iters=${2:-20}
export LAB_HOPPER=1 LAB_GAUSS=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for cfg in "128 64 24" "128 128 24" "64 64 48" "64 128 48"; do
  set -- $cfg
  if timeout 15 "$bin" $1 $2 1000 3 1 0.3 1.0 && timeout 15 "$bin" $1 $2 4097 2 1 0.3; then
    timeout 60 "$bin" $1 $2 32768 $3 "$iters" 0.1 0.2 0.5 1.0 || echo "FAILED/TIMEOUT ($?): D=$1 bs=$2 32K"
  else
    echo "FAILED/TIMEOUT: D=$1 bs=$2 odd lengths; 32K skipped"
  fi
done
