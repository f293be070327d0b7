#!/usr/bin/env bash
# compute-sanitizer memcheck, racecheck and synccheck over every kernel on small shapes (device machine).
set -uo pipefail
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || ls /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
for tool in memcheck racecheck synccheck; do
  echo "== compute-sanitizer --tool $tool python3 benchmarks/sanitize_small.py"
  "$CS" --tool "$tool" --error-exitcode 1 python3 benchmarks/sanitize_small.py 2>&1 | tail -8
  echo "exit code: ${PIPESTATUS[0]}"
done
