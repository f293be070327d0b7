#!/usr/bin/env bash
# One device-machine session: build against that machine's torch, run the tests (GPU ones
# included), then the kernel benchmark. Logs go to $OUT (the device tool brings them back).
# Usage: bash benchmarks/run_device.sh [build] [smoke] [test] [bench] [sanitize] [schedule] [overhead] [demo] [e2e]   (default: build test bench)
# smoke: the op tests on small odd shapes only, under a short time limit; a failure or a hang there
# stops the session before the long stages. Every stage runs under STAGE_TIMEOUT seconds (default 480).
# Wheels in .whl/ (benchmarks/fetch_wheels.sh: diffusers, the CUTLASS headers) are installed first,
# offline, into /tmp/site ahead of the machine's own packages. e2e: benchmarks/bench_e2e.py with
# $E2E_ARGS (e.g. "--models wan1.3b-480p --full-loop wan1.3b-480p"), JSON in $OUT/bench_e2e.json.
# overhead: benchmarks/bench_step_overhead.py --legacy (the sparse step outside its attention kernels).
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
stages=${*:-build test bench}
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0a"}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  if ls .whl/diffusers-*.whl >/dev/null 2>&1; then  # diffusers needs the machine's huggingface_hub 1.x (>= 1.32)
    python3 -c "import diffusers, huggingface_hub as h; print('diffusers', diffusers.__version__, '| huggingface_hub', h.__version__); assert h.__version__.split('.')[0] == '1'" || exit 1
  fi
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader | tee "$OUT/gpu.txt"
T="timeout ${STAGE_TIMEOUT:-480}"
# The device tool brings back at most 8 files from $OUT. With more (build, test, sanitize, bench
# and schedule in one call write 9), every file goes into all_logs.tar.gz and only the text reports
# below stay beside it, so no log is dropped unseen; on exit, also after a failed stage.
pack_out() {
  local files
  mapfile -t files < <(find "$OUT" -type f ! -name all_logs.tar.gz | sort)
  (( ${#files[@]} <= 8 )) && return 0
  # written outside $OUT, then moved in: tar of a folder it writes into fails ("file changed as we
  # read it") and the files would stay, past the limit
  local tmp
  tmp=$(mktemp) && tar -czf "$tmp" -C "$OUT" --exclude=all_logs.tar.gz . && mv "$tmp" "$OUT/all_logs.tar.gz" || return 0
  local f
  for f in "${files[@]}"; do
    case ${f#"$OUT"/} in
      gpu.txt | tests.log | sanitize.log | bench_kernels.txt | bench_schedule.txt | bench_e2e.txt | demo.txt) ;;
      *) rm -f "$f" ;;
    esac
  done
  find "$OUT" -mindepth 1 -type d -empty -delete
  echo "run_device: ${#files[@]} files in \$OUT, packed into all_logs.tar.gz (text reports kept beside it)"
}
trap pack_out EXIT
# with_clocks FILE MS CMD...: SM clock, power and temperature every MS ms while CMD runs (what moves single timings)
with_clocks() {
  local file=$1 ms=$2; shift 2
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms "$ms" > "$file" 2>&1 &
  local smi=$!
  "$@"
  kill $smi 2>/dev/null || true
}
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
      with_clocks "$OUT/clocks.csv" 200 $T python3 benchmarks/bench_kernels.py ${BENCH_ARGS:-} --csv "$OUT/bench_kernels.csv" \
        > "$OUT/bench_kernels.txt" 2>&1
      tail -n 45 "$OUT/bench_kernels.txt" ;;
    sanitize)
      $T bash benchmarks/sanitize.sh > "$OUT/sanitize.log" 2>&1; tail -20 "$OUT/sanitize.log" ;;
    demo)
      $T python3 -m adaspa_ext.demo ${DEMO_ARGS:-} --out "$OUT/demo" > "$OUT/demo.txt" 2>&1
      grep -v "step/s" "$OUT/demo.txt" | tail -n 14 ;;
    e2e)
      with_clocks "$OUT/clocks_e2e.csv" 1000 $T python3 benchmarks/bench_e2e.py ${E2E_ARGS:-} --json "$OUT/bench_e2e.json" \
        > "$OUT/bench_e2e.txt" 2>&1
      tail -n 25 "$OUT/bench_e2e.txt" ;;
    schedule)
      $T python3 benchmarks/bench_schedule.py ${SCHED_ARGS:-} --csv "$OUT/bench_schedule.csv" > "$OUT/bench_schedule.txt" 2>&1
      tail -n 40 "$OUT/bench_schedule.txt" ;;
    overhead)
      $T python3 benchmarks/bench_step_overhead.py --legacy ${OVERHEAD_ARGS:-} --csv "$OUT/bench_step_overhead.csv" \
        > "$OUT/bench_step_overhead.txt" 2>&1
      tail -n 12 "$OUT/bench_step_overhead.txt" ;;
  esac
done
