#!/usr/bin/env bash
# A / B of ADASPA_TILE_ORDER (never = launch order, auto = longest idx row first) on the device
# machine, interleaved (never, auto, never, auto) so that clock drift hits both alike: the 50-step
# schedule benchmark (bench_schedule.py, sparse steps on the hopper path) and the kernel benchmark
# at uniform list lengths (the planning kernels' cost where there is nothing to balance).
# Logs in $OUT/ab_*; prints the per-preset schedule lines and the kernel rows last.
# Usage: [ROUNDS=2] bash benchmarks/ab_tile_order.sh [PRESETS...]   (default hunyuan-720p wan1.3b-480p)
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
presets=${*:-hunyuan-720p wan1.3b-480p}
for round in $(seq "${ROUNDS:-2}"); do
  for mode in never auto; do
    ADASPA_TILE_ORDER=$mode timeout 300 python3 benchmarks/bench_schedule.py --presets $presets --no-flex --no-quality \
      > "$OUT/ab_schedule_${mode}_$round.txt" 2>&1 || echo "schedule $mode round $round: rc $?"
    grep -E "^  [a-z0-9.-]+: dense" "$OUT/ab_schedule_${mode}_$round.txt" | sed "s/^/$mode r$round /"
  done
done
for mode in never auto; do
  ADASPA_TILE_ORDER=$mode timeout 200 python3 benchmarks/bench_kernels.py --shapes h24-d128-32k h48-d64-32k \
    --densities 0.2 --path hopper --no-flex > "$OUT/ab_kernels_$mode.txt" 2>&1 || echo "kernels $mode: rc $?"
  echo "== kernels, ADASPA_TILE_ORDER=$mode (shape, path, block, density, ms, TF/s, ...)"
  grep -E "^ +h(24|48).* 0\.20 " "$OUT/ab_kernels_$mode.txt"
done
