#!/usr/bin/env bash
# One-stop set-up on a fresh Debian 12 machine: installs the packages, builds, extracts the default corpus,
# then runs either the demo (`demo`) or the whole test suite (`test`).
set -euo pipefail
mode="${1:-demo}"
cd "$(dirname "$0")/.."
case "$mode" in demo|test) ;; *) echo "usage: scripts/setup.sh demo|test" >&2; exit 2 ;; esac

bash scripts/install-deps-debian.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
bash scripts/extract-kjv.sh

if [ "$mode" = test ]; then
  # Each test process gets one LibTorch thread; two run side by side on a 2-core machine.
  ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900
  exit $?
fi

if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -x build/app/gui/hedgelab ]; then
  exec build/app/gui/hedgelab --demo
fi
# Headless: the teacher (evaluated and sampled), then the two-stage recipe on it (about 10 minutes on 2 cores).
build/app/cli/hedgelab-cli demo --out out/demo
exec build/app/cli/hedgelab-cli distill --preset demo --out out/demo/student
