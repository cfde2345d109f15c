#!/usr/bin/env bash
# Run ON THE GPU MACHINE (Ubuntu 24.04, PyTorch 2.11 with CUDA), in the repo root, with .debs/ carried
# (prepare it here with scripts/gpu-gather-debs.sh). Builds HedgeLab with the GUI off against PyTorch's bundled
# LibTorch, runs the test suite (or the labels in $HEDGELAB_CTEST_LABELS), and leaves logs under $OUT.
# HEDGELAB_GPU_TARGETS limits the build to some targets; HEDGELAB_GPU_SKIP_TESTS=1 skips ctest.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$ROOT/out}"
mkdir -p "$OUT"
DEBROOT="$ROOT/.debs/root"
mkdir -p "$DEBROOT"
for f in "$ROOT"/.debs/*.deb; do dpkg -x "$f" "$DEBROOT"; done
export LD_LIBRARY_PATH="$DEBROOT/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
TORCH_PREFIX="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')"
BUILD="${HEDGELAB_GPU_BUILD_DIR:-$ROOT/build-gpu}"

{
  echo "== $(date -u) on $(hostname); $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  cmake --version | head -1
} 2>&1 | tee "$OUT/build.log"

# The carried spdlog 1.10 and fmt 9, even where the machine has its own spdlog: PyTorch ships fmt 12 in
# torch/include, which an -isystem path puts ahead of /usr/include, and no Debian or Ubuntu spdlog builds
# against it. -I is searched before every -isystem path, so the carried fmt 9 headers win.
ARCHLIB="$DEBROOT/usr/lib/x86_64-linux-gnu"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHEDGELAB_GUI=OFF \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$DEBROOT/usr" \
  -Dspdlog_DIR="$ARCHLIB/cmake/spdlog" -Dfmt_DIR="$ARCHLIB/cmake/fmt" \
  -DCMAKE_CXX_FLAGS="-I$DEBROOT/usr/include" \
  -DQT_HOST_PATH="$DEBROOT/usr" 2>&1 | tee -a "$OUT/build.log"
targets="${HEDGELAB_GPU_TARGETS:-}"  # e.g. "hedgelab-cli bench_stage_steps": only these (default: all)
# The whole build output goes to build-full.log; build.log keeps every error line and the last 60 lines.
cmake --build "$BUILD" -j "$(nproc)" ${targets:+--target $targets} -- -k 0 >"$OUT/build-full.log" 2>&1
build_rc=$?
grep -E "FAILED|error" "$OUT/build-full.log" | head -n 40 | tee -a "$OUT/build.log"
tail -n 60 "$OUT/build-full.log" | tee -a "$OUT/build.log"
echo "build exit code: $build_rc" | tee -a "$OUT/build.log"
[ "$build_rc" -eq 0 ] || exit "$build_rc"

[ "${HEDGELAB_GPU_SKIP_TESTS:-0}" = 1 ] && exit 0
labels="${HEDGELAB_CTEST_LABELS:-}"
ctest --test-dir "$BUILD" --output-on-failure -j 8 ${labels:+-L "$labels"} 2>&1 | tee "$OUT/ctest.log"
exit "${PIPESTATUS[0]}"
