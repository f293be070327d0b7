#!/usr/bin/env bash
# One device-machine session: build against that machine's torch, run the tests (GPU ones
# included), then the kernel benchmark. Logs go to $OUT (the device tool brings them back).
# Usage: bash benchmarks/run_device.sh [build] [smoke] [test] [bench] [sanitize] [schedule] [demo]   (default: build test bench)
# smoke: the op tests on small odd shapes only, under a short time limit; a failure or a hang there
# stops the session before the long stages. Every stage runs under STAGE_TIMEOUT seconds (default 480).
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
stages=${*:-build test bench}
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0a"}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader | tee "$OUT/gpu.txt"
T="timeout ${STAGE_TIMEOUT:-480}"
for s in $stages; do
  case $s in
    smoke)
      timeout 180 python3 -m pytest -x -m gpu tests/test_ops.py > "$OUT/smoke.log" 2>&1
      rc=$?; tail -3 "$OUT/smoke.log"; grep -E "^(FAILED|ERROR)" "$OUT/smoke.log" | head -10
      [ $rc -eq 0 ] || { echo "smoke: rc $rc, stopping"; exit 1; } ;;
    build)
      start=$(date +%s)
      python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }
      echo "build: $(( $(date +%s) - start )) s (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, MAX_JOBS=$MAX_JOBS)"
      grep -E "spill|registers" "$OUT/build.log" | sort | uniq -c | head -20 ;;
    test)
      $T python3 -m pytest -rs tests/ > "$OUT/tests.log" 2>&1  # no -q here: -qq (with PYTEST_ADDOPTS=-q) drops the summary line
      grep -E "passed|failed|error" "$OUT/tests.log" | tail -3
      grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -30 ;;
    bench)
      # SM clock, power and temperature every 200 ms while it runs (what moves single timings)
      nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 200 > "$OUT/clocks.csv" 2>&1 &
      smi=$!
      $T python3 benchmarks/bench_kernels.py ${BENCH_ARGS:-} --csv "$OUT/bench_kernels.csv" > "$OUT/bench_kernels.txt" 2>&1
      kill $smi 2>/dev/null || true
      tail -n 45 "$OUT/bench_kernels.txt" ;;
    sanitize)
      $T bash benchmarks/sanitize.sh > "$OUT/sanitize.log" 2>&1; tail -20 "$OUT/sanitize.log" ;;
    demo)
      $T python3 -m adaspa_ext.demo ${DEMO_ARGS:-} --out "$OUT/demo" > "$OUT/demo.txt" 2>&1
      grep -v "step/s" "$OUT/demo.txt" | tail -n 14 ;;
    schedule)
      $T python3 benchmarks/bench_schedule.py ${SCHED_ARGS:-} --csv "$OUT/bench_schedule.csv" > "$OUT/bench_schedule.txt" 2>&1
      tail -n 40 "$OUT/bench_schedule.txt" ;;
  esac
done
