#!/usr/bin/env bash
# The token-split ablation of docs/method.md §5 on a preset (default demo): the recipe with its total token
# budget re-split 10:90, 25:75, 50:50 and 75:25 between the stages, the four runs side by side (each with
# THREADS threads), one JSON result per split under OUT_DIR. Usage:
#   bench/run_token_splits.sh [BUILD_DIR] [OUT_DIR] [THREADS] [PRESET]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
out="${2:-out/token-splits}"
threads="${3:-1}"
preset="${4:-demo}"
mkdir -p "$out"
pids=()
for split in split_10_90 split_25_75 split_50_50 split_75_25; do
  rm -f "$out/$split.h5"
  "$build/app/cli/hedgelab-cli" --threads "$threads" --log-level warn distill --preset "$preset" \
    --ablation "$split" --session "$out/$split.h5" --json >"$out/$split.json" 2>"$out/$split.log" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for split in split_10_90 split_25_75 split_50_50 split_75_25; do
  echo "== $split"; cat "$out/$split.json"
done
exit $status
