#!/usr/bin/env bash
# Run a kernel_lab binary (built here by kernel_lab.sh for 90a) over the benchmark shapes with the
# sm_90a sparse kernel beside the portable one, each configuration under a time limit so a hang
# cannot eat the session. Usage: bash benchmarks/lab_sm90.sh BINARY [ITERS]
set -uo pipefail
bin=$1; iters=${2:-20}
export LAB_HOPPER=1 LAB_GAUSS=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
# correctness first on odd lengths (partial last block), then the speed shapes
for cfg in "128 64 1000 3" "128 128 1000 3" "64 64 4097 2" "64 128 4097 2"; do
  timeout 60 "$bin" $cfg 1 0.3 1.0 || echo "FAILED/TIMEOUT ($?): $cfg"
done
for cfg in "128 64 32768 24" "128 128 32768 24" "64 64 32768 48" "64 128 32768 48"; do
  timeout 120 "$bin" $cfg "$iters" 0.1 0.2 0.5 1.0 || echo "FAILED/TIMEOUT ($?): $cfg"
done
