#!/usr/bin/env bash
# The CPU benchmarks behind docs/results.md: teacher forward tokens/s of the demo teacher, 1 and 2 threads,
# and stage-1/stage-2 training steps on the demo preset.
# Usage: bench/run_cpu_benchmarks.sh [BUILD_DIR]   (default build). Prints one JSON line per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
for threads in 1 2; do
  for batch in 1 8; do
    "$build/bench/bench_teacher_forward" --threads "$threads" --batch "$batch" --context 128 --reps 20
  done
done
for threads in 1 2; do
  "$build/bench/bench_stage_steps" --threads "$threads" --steps 30 --warmup 5
done
