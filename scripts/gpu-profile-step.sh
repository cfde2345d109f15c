#!/usr/bin/env bash
# Run ON THE GPU MACHINE after scripts/gpu-build.sh (or gpu-all.sh's build step): where one recipe step's GPU
# time goes. Runs bench_gpu_recipe_step for each stage in $HEDGELAB_PROFILE_STAGES (default "1 2") at
# $HEDGELAB_PROFILE_MODEL (default 1b; stage 2 at $HEDGELAB_PROFILE_MODEL_S2, default 160m, since ncu's
# per-kernel replay makes a 1b stage-2 step take minutes), without checkpointing, for one step with no warm-up and no separate
# teacher forward, under Nsight Compute (the GPU machine has ncu, not nsys) measuring only each kernel's
# duration (clocks left alone; ncu serialises the kernels, so the sum is GPU time without overlap or launch
# gaps), and prints the kernel names that take most of it (total ms, share, launches) as
# $OUT/profile-stage<S>.txt. The model's set-up kernels (random initialisation, copies) are in the sum too.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$ROOT/out}"
BUILD="${HEDGELAB_GPU_BUILD_DIR:-/tmp/hlb}"
command -v ncu >/dev/null || { echo "ncu not found: no profile" | tee "$OUT/profile-stage.txt"; exit 1; }
for stage in ${HEDGELAB_PROFILE_STAGES:-1 2}; do
  csv="/tmp/hedgelab-stage$stage.csv"
  model="${HEDGELAB_PROFILE_MODEL:-1b}"
  [ "$stage" = 2 ] && model="${HEDGELAB_PROFILE_MODEL_S2:-160m}"
  timeout "${HEDGELAB_STEP_TIMEOUT:-240}" ncu --clock-control none --metrics gpu__time_duration.sum --csv \
    "$BUILD/bench/bench_gpu_recipe_step" --models "$model" --stages "$stage" --checkpointing off \
    --steps 1 --warmup 0 --teacher-reps 0 >"$csv" 2>/tmp/hedgelab-stage$stage.err
  rc=$?
  {
    echo "== stage $stage, pythia-$model, no checkpointing, one step (rc $rc)"
    python3 - "$csv" "${HEDGELAB_PROFILE_TOP:-40}" <<'PY'
import csv, sys, collections
# The bench's own JSON lines share stdout with ncu's CSV: the header is the first row naming "Kernel Name",
# and kernel rows are the later rows of the same width.
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
at = next((i for i, r in enumerate(rows) if "Kernel Name" in r), None)
if at is None:
    sys.exit("no ncu header row (Kernel Name) in the profile output")
head = rows[at]
body = [r for r in rows[at + 1:] if len(r) == len(head)]
if not body:
    sys.exit("no kernel rows after the ncu header")
k, v, u = head.index("Kernel Name"), head.index("Metric Value"), head.index("Metric Unit")
scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "second": 1e3}
acc = collections.defaultdict(lambda: [0.0, 0])
for r in body:
    ms = float(r[v].replace(",", "")) * scale.get(r[u], 1e-6)
    name = r[k].split("(")[0][:100]
    acc[name][0] += ms
    acc[name][1] += 1
total = sum(a[0] for a in acc.values())
print(f"kernels: {total:.1f} ms over {sum(a[1] for a in acc.values())} launches")
for name, (ms, n) in sorted(acc.items(), key=lambda x: -x[1][0])[:int(sys.argv[2])]:
    print(f"{ms:9.2f} ms {100 * ms / total:5.1f}% {n:6d}x  {name}")
PY
  } >"$OUT/profile-stage$stage.txt" 2>&1
  tail -n 5 /tmp/hedgelab-stage$stage.err >>"$OUT/profile-stage$stage.txt"
  grep '^{' "$csv" >>"$OUT/profile-stage$stage.txt"
  cat "$OUT/profile-stage$stage.txt"
done
