#!/usr/bin/env bash
# Build benchmarks/kernel_lab.cu (torch-free kernel timing) with the extension's nvcc flags.
# Usage: bash benchmarks/kernel_lab.sh OUT_BINARY [ARCH=90a] [extra nvcc flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1; arch=${2:-90a}; shift $(( $# >= 2 ? 2 : 1 ))
py=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
cuda=$($py third_party/locate_cuda.py)
cutlass=$($py third_party/locate_cutlass.py)
mapfile -t flags < <(grep -v '^#' csrc/nvcc_flags.txt | sed '/^\s*$/d')
"$cuda/bin/nvcc" -std=c++17 -O3 "${flags[@]}" -gencode "arch=compute_${arch},code=sm_${arch}" \
  -Iinclude -I"$cutlass" -Xptxas -v "$@" -o "$out" benchmarks/kernel_lab.cu 2>&1 | grep -E "error|spill|registers" || true
test -x "$out"
