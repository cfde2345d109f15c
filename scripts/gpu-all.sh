#!/usr/bin/env bash
# ONE device call for the GPU path (issue 7): builds HedgeLab's CUDA targets against PyTorch's LibTorch with
# the GUI off (scripts/gpu-build.sh), runs the cuda-labelled tests, then the benchmarks (the fused scan,
# bench_scan_cuda; the models at Pythia shapes, bench_gpu_models and bench/gpu_hf_teacher.py; the recipe's own
# step through DistillRun, bench_gpu_recipe_step; the scan's peers, bench/gpu_scan_peers.py), and leaves logs
# and results under $OUT.
# Prepare HERE:  HEDGELAB_GPU_WORKTREE=1 bash scripts/gpu-prepare.sh   (and the peers' sources in .peers/)
# Then call the device with carry [".gpu-tree", ".peers"] and the command
#   cd .gpu-tree && bash scripts/gpu-all.sh
# Knobs: HEDGELAB_GPU_PEERS (default ../.peers), HEDGELAB_GPU_STEPS ("build tests bench models peers"; a subset
# skips the rest), HEDGELAB_BENCH_ARGS (extra bench_scan_cuda arguments), HEDGELAB_PEER_ARGS (extra peer
# driver arguments, e.g. --shapes 8192:128 --budget-s 120), HEDGELAB_RECIPE_ARGS (bench_gpu_recipe_step's).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export OUT="${OUT:-$ROOT/out}"
mkdir -p "$OUT"
export HEDGELAB_GPU_BUILD_DIR="${HEDGELAB_GPU_BUILD_DIR:-/tmp/hlb}"
BUILD="$HEDGELAB_GPU_BUILD_DIR"
PEERS="${HEDGELAB_GPU_PEERS:-$ROOT/../.peers}"
steps="${HEDGELAB_GPU_STEPS:-build tests bench models recipe peers}"
has() { [[ " $steps " == *" $1 "* ]]; }
log="$OUT/log"
echo "== gpu-all: $(date -u +%FT%TZ) steps: $steps" | tee -a "$log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$log"

if has build; then
  t0=$(date +%s)
  HEDGELAB_GPU_TARGETS="${HEDGELAB_GPU_TARGETS:-test_cuda_scan test_cuda_run bench_scan_cuda bench_gpu_models bench_gpu_recipe_step}" HEDGELAB_GPU_SKIP_TESTS=1 \
    bash "$ROOT/scripts/gpu-build.sh" >>"$log" 2>&1
  rc=$?
  echo "build rc=$rc in $(( $(date +%s) - t0 )) s" | tee -a "$log"
  grep -E "error|ptxas info|registers|spill" "$OUT/build.log" | head -40 >>"$log"
  [ "$rc" -eq 0 ] || { tail -n 40 "$OUT/build.log"; exit "$rc"; }
fi

# The carried Debian libraries (Qt for the test suites) that gpu-build.sh unpacked.
export LD_LIBRARY_PATH="$ROOT/.debs/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"

if has tests; then
  t0=$(date +%s)
  ctest --test-dir "$BUILD" -L cuda -V --timeout 900 >"$OUT/ctest-cuda.log" 2>&1
  rc=$?
  echo "ctest -L cuda rc=$rc in $(( $(date +%s) - t0 )) s" | tee -a "$log"
  grep -E "rel err|PASS|FAIL|SKIP|Totals|tests passed|Passed|Failed" "$OUT/ctest-cuda.log" | tail -n 80
fi

if has bench; then
  t0=$(date +%s)
  "$BUILD/bench/bench_scan_cuda" ${HEDGELAB_BENCH_ARGS:-} >"$OUT/scan_ours.jsonl" 2>>"$log"
  echo "bench_scan_cuda rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$log"
  cat "$OUT/scan_ours.jsonl"
fi

if has models; then
  t0=$(date +%s)
  { "$BUILD/bench/bench_gpu_models" ${HEDGELAB_MODELS_ARGS:-}
    PYTHONUNBUFFERED=1 python3 "$ROOT/bench/gpu_hf_teacher.py" ${HEDGELAB_HF_ARGS:-}; } >"$OUT/models.jsonl" 2>>"$log"
  echo "models rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$log"
  cat "$OUT/models.jsonl"
fi

if has recipe; then
  t0=$(date +%s)
  "$BUILD/bench/bench_gpu_recipe_step" ${HEDGELAB_RECIPE_ARGS:-} >"$OUT/recipe.jsonl" 2>>"$log"
  echo "recipe rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$log"
  cat "$OUT/recipe.jsonl"
fi

if has peers; then
  t0=$(date +%s)
  PYTHONUNBUFFERED=1 python3 "$ROOT/bench/gpu_scan_peers.py" --peers "$PEERS" --ours "$OUT/scan_ours.jsonl" \
    --out "$OUT/scan_all.jsonl" ${HEDGELAB_PEER_ARGS:-} 2>&1 | tee "$OUT/peers.log"
  echo "peers rc=${PIPESTATUS[0]} in $(( $(date +%s) - t0 )) s" | tee -a "$log"
fi
