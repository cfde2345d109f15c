#!/usr/bin/env bash
# ONE device call for the GPU path (issue 7): builds HedgeLab's CUDA targets against PyTorch's LibTorch with
# the GUI off (scripts/gpu-build.sh), runs the cuda-labelled tests, then the benchmarks (the fused scan,
# bench_scan_cuda; the models at Pythia shapes, bench_gpu_models and bench/gpu_hf_teacher.py; the recipe's own
# step through DistillRun, bench_gpu_recipe_step; the linear-attention forms and generation against
# transformers' KV cache, bench_gpu_linear_attention, bench_gpu_generate and bench/gpu_hf_generate.py; the
# scan's peers, bench/gpu_scan_peers.py), and leaves logs and results under $OUT.
# Prepare HERE:  HEDGELAB_GPU_WORKTREE=1 bash scripts/gpu-prepare.sh   (and the peers' sources in .peers/)
# Then call the device with carry [".gpu-tree", ".peers"] and the command
#   cd .gpu-tree && bash scripts/gpu-all.sh
# Knobs: HEDGELAB_GPU_PEERS (default ../.peers), HEDGELAB_GPU_STEPS ("build tests bench profile models recipe
# generate peers"; a subset skips the rest; "stepprofile" adds scripts/gpu-profile-step.sh, per-kernel
# times of one recipe step; "trace" adds one recipe step under the Kineto profiler, summarised by the op that
# launched each kernel by bench/gpu_trace_summary.py, HEDGELAB_TRACE_ARGS choosing the configurations),
# HEDGELAB_BENCH_ARGS (extra bench_scan_cuda arguments), HEDGELAB_PEER_ARGS (extra peer driver arguments,
# e.g. --shapes 8192:128 --budget-s 120), HEDGELAB_RECIPE_ARGS (bench_gpu_recipe_step's),
# HEDGELAB_RECIPE_VARIANTS (its reruns with fast paths switched off, ";"-separated, "" for none),
# HEDGELAB_LA_ARGS, HEDGELAB_GENERATE_ARGS (shared by both generation drivers: --batches, --contexts,
# --decode). HEDGELAB_GPU_PLAN=verify gives those knobs the defaults of a checking call: build, the cuda
# tests, the pythia-1b recipe step with its A/B variants (a fast path off, an opt-in one on), one traced step,
# 150 s a step. Knobs set explicitly still win.
set -uo pipefail
if [ "${HEDGELAB_GPU_PLAN:-}" = verify ]; then
  : "${HEDGELAB_GPU_STEPS:=build tests recipe trace}"
  : "${HEDGELAB_RECIPE_ARGS:=--models 1b --stages 1,2 --checkpointing off}"
  : "${HEDGELAB_RECIPE_VARIANTS=HEDGELAB_FUSED_LA_NORMALISE=1;HEDGELAB_FUSED_MIXER_OUTPUT=0;HEDGELAB_FP32_WEIGHT_GRADS=1}"
  : "${HEDGELAB_STEP_TIMEOUT:=150}"
  : "${HEDGELAB_TRACE_TOP:=80}"
  export HEDGELAB_GPU_STEPS HEDGELAB_RECIPE_ARGS HEDGELAB_RECIPE_VARIANTS HEDGELAB_STEP_TIMEOUT HEDGELAB_TRACE_TOP
elif [ -n "${HEDGELAB_GPU_PLAN:-}" ]; then
  echo "gpu-all.sh: HEDGELAB_GPU_PLAN='$HEDGELAB_GPU_PLAN': expected verify (or unset)" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export OUT="${OUT:-$ROOT/out}"
mkdir -p "$OUT"
export HEDGELAB_GPU_BUILD_DIR="${HEDGELAB_GPU_BUILD_DIR:-/tmp/hlb}"
BUILD="$HEDGELAB_GPU_BUILD_DIR"
PEERS="${HEDGELAB_GPU_PEERS:-$ROOT/../.peers}"
steps="${HEDGELAB_GPU_STEPS:-build tests bench profile models recipe generate peers}"
has() { [[ " $steps " == *" $1 "* ]]; }
# Every benchmark command is cut at HEDGELAB_STEP_TIMEOUT seconds (default 240), so one slow step cannot take
# the rest of the call with it; what it printed before stays in its log.
tmo() { timeout "${HEDGELAB_STEP_TIMEOUT:-240}" "$@"; }
log="$OUT/log"
echo "== gpu-all: $(date -u +%FT%TZ) steps: $steps" | tee -a "$log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$log"

if has build; then
  t0=$(date +%s)
  HEDGELAB_GPU_TARGETS="${HEDGELAB_GPU_TARGETS:-test_cuda_scan test_cuda_feature_map test_cuda_cosine test_cuda_conv test_cuda_mixer_output test_cuda_rotary test_cuda_logit_losses test_cuda_adamw test_cuda_run test_trained_linear bench_scan_cuda bench_gpu_models bench_gpu_recipe_step bench_gpu_linear_attention bench_gpu_generate}" HEDGELAB_GPU_SKIP_TESTS=1 \
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
  ctest --test-dir "$BUILD" -L cuda -V --timeout "${HEDGELAB_CTEST_TIMEOUT:-300}" >"$OUT/ctest-cuda.log" 2>&1
  rc=$?
  echo "ctest -L cuda rc=$rc in $(( $(date +%s) - t0 )) s" | tee -a "$log"
  grep -E "rel err|PASS|FAIL|SKIP|Totals|tests passed|Passed|Failed" "$OUT/ctest-cuda.log" | tail -n 80
fi

if has bench; then
  t0=$(date +%s)
  tmo "$BUILD/bench/bench_scan_cuda" ${HEDGELAB_BENCH_ARGS:-} >"$OUT/scan_ours.jsonl" 2>>"$log"
  echo "bench_scan_cuda rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$log"
  cat "$OUT/scan_ours.jsonl"
fi

if has profile; then
  # Per-kernel times of the fused scan's passes at one shape (Nsight Compute's duration only; clocks left
  # alone), forward and forward+backward as bench_scan_cuda calls them.
  t0=$(date +%s)
  tmo ncu --clock-control none --metrics gpu__time_duration.sum --csv -k regex:'state_|chunk_' \
    "$BUILD/bench/bench_scan_cuda" ${HEDGELAB_PROFILE_ARGS:---N 128 --T 8192 --reps 2} >"$OUT/profile.csv" 2>>"$log"
  echo "profile rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$log"
  python3 - "$OUT/profile.csv" <<'PY' | tee -a "$log"
import csv, sys, collections
# The benchmark's own JSON lines split into many fields too: the table starts at ncu's header row.
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
start = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
head, body = rows[start], [r for r in rows[start + 1:] if len(r) == len(rows[start])]
k, v, u = head.index("Kernel Name"), head.index("Metric Value"), head.index("Metric Unit")
acc = collections.defaultdict(list)
for r in body:
    acc[(r[k].split("(")[0], r[u])].append(float(r[v].replace(",", "")))
for (name, unit), t in acc.items():
    t.sort()
    print(f"{name}: {len(t)} launches, median {t[len(t)//2]:.1f} {unit}")
PY
fi

if has models; then
  t0=$(date +%s)
  { tmo "$BUILD/bench/bench_gpu_models" ${HEDGELAB_MODELS_ARGS:-}
    PYTHONUNBUFFERED=1 tmo python3 "$ROOT/bench/gpu_hf_teacher.py" ${HEDGELAB_HF_ARGS:-}; } >"$OUT/models.jsonl" 2>>"$log"
  echo "models rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$log"
  cat "$OUT/models.jsonl"
fi

if has recipe; then
  t0=$(date +%s)
  tmo "$BUILD/bench/bench_gpu_recipe_step" ${HEDGELAB_RECIPE_ARGS:-} >"$OUT/recipe.jsonl" 2>>"$log"
  echo "recipe rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$log"
  # The same configurations again under each variant of HEDGELAB_RECIPE_VARIANTS (";"-separated sets of
  # environment assignments, each switching one fast path back to its earlier form) for the comparison;
  # the lines after each {"variant": ...} marker are that variant's. "" skips them.
  IFS=';' read -r -a variants <<<"${HEDGELAB_RECIPE_VARIANTS-HEDGELAB_FUSED_COSINE=0;HEDGELAB_SCAN_RECOMPUTE_STATES=1;HEDGELAB_FUSED_FEATURE_MAP=0;HEDGELAB_STAGE1_RECOMPUTE_QKV=1}"
  for v in "${variants[@]}"; do
    [ -n "$v" ] || continue
    echo "{\"variant\":\"$v\"}" >>"$OUT/recipe.jsonl"
    # shellcheck disable=SC2086
    env $v timeout "${HEDGELAB_STEP_TIMEOUT:-240}" "$BUILD/bench/bench_gpu_recipe_step" ${HEDGELAB_RECIPE_ARGS:-} \
      >>"$OUT/recipe.jsonl" 2>>"$log"
    echo "recipe ($v) rc=$?" | tee -a "$log"
  done
  cat "$OUT/recipe.jsonl"
fi

if has stepprofile; then  # not in the default steps: where one recipe step's GPU time goes (Nsight Compute)
  t0=$(date +%s)
  bash "$ROOT/scripts/gpu-profile-step.sh" 2>>"$log"
  echo "stepprofile rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$log"
fi

if has trace; then  # not in the default steps: one recipe step under LibTorch's Kineto profiler, by op
  t0=$(date +%s)
  rm -rf /tmp/hedgelab-traces
  tmo "$BUILD/bench/bench_gpu_recipe_step" --steps 2 --warmup 1 --teacher-reps 0 --trace /tmp/hedgelab-traces \
    ${HEDGELAB_TRACE_ARGS:---models 1b --stages 1,2 --checkpointing off} >"$OUT/trace-steps.jsonl" 2>>"$log"
  echo "trace rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$log"
  # One summary file and one archive, so that the call's files stay few.
  for t in /tmp/hedgelab-traces/*.json; do
    [ -e "$t" ] || continue
    python3 "$ROOT/bench/gpu_trace_summary.py" "$t" --top "${HEDGELAB_TRACE_TOP:-45}" >>"$OUT/trace-summary.txt" 2>&1
    echo >>"$OUT/trace-summary.txt"
  done
  [ -d /tmp/hedgelab-traces ] && tar -C /tmp -czf "$OUT/traces.tgz" hedgelab-traces
  head -n 80 "$OUT/trace-summary.txt"
fi

if has generate; then
  t0=$(date +%s)
  { tmo "$BUILD/bench/bench_gpu_linear_attention" ${HEDGELAB_LA_ARGS:-}
    tmo "$BUILD/bench/bench_gpu_generate" ${HEDGELAB_GENERATE_ARGS:-}
    PYTHONUNBUFFERED=1 tmo python3 "$ROOT/bench/gpu_hf_generate.py" ${HEDGELAB_GENERATE_ARGS:-}; } \
    >"$OUT/generate.jsonl" 2>>"$log"
  echo "generate rc=$? in $(( $(date +%s) - t0 )) s" | tee -a "$log"
  cat "$OUT/generate.jsonl"
fi

if has peers; then
  t0=$(date +%s)
  PYTHONUNBUFFERED=1 tmo python3 "$ROOT/bench/gpu_scan_peers.py" --peers "$PEERS" --ours "$OUT/scan_ours.jsonl" \
    --out "$OUT/scan_all.jsonl" ${HEDGELAB_PEER_ARGS:-} 2>&1 | tee "$OUT/peers.log"
  echo "peers rc=${PIPESTATUS[0]} in $(( $(date +%s) - t0 )) s" | tee -a "$log"
fi
