#!/usr/bin/env bash
# Ablations of docs/method.md §5 on a preset (default demo), run side by side (each with THREADS threads),
# one JSON result and one session per ablation under OUT_DIR. The default list is the token-split ablation
# (the recipe's total budget re-split 10:90, 25:75, 50:50, 75:25); name others (no_gate, no_conv,
# no_selective_decay) after the preset. Usage:
#   bench/run_ablations.sh [BUILD_DIR] [OUT_DIR] [THREADS] [PRESET] [ABLATION...]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
out="${2:-out/ablations}"
threads="${3:-1}"
preset="${4:-demo}"
shift $(($# < 4 ? $# : 4))
ablations=("$@")
[ ${#ablations[@]} -gt 0 ] || ablations=(split_10_90 split_25_75 split_50_50 split_75_25)
mkdir -p "$out"
pids=()
for a in "${ablations[@]}"; do
  rm -rf "$out/$a.h5" "$out/$a.h5.checkpoints"
  "$build/app/cli/hedgelab-cli" --threads "$threads" --log-level warn distill --preset "$preset" \
    --ablation "$a" --session "$out/$a.h5" --json >"$out/$a.json" 2>"$out/$a.log" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for a in "${ablations[@]}"; do
  echo "== $a"; cat "$out/$a.json"
done
exit $status
