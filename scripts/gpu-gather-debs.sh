#!/usr/bin/env bash
# Run HERE (Debian 12 workstation), before a GPU-machine call: downloads the Debian packages the GPU machine
# lacks (spdlog, nlohmann-json, fmt, QtCore/QtTest with moc) into .debs/ (git-ignored), to be named in the
# device call's `carry` and unpacked there by scripts/gpu-build.sh into .debs/root (never into /).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .debs
cd .debs
apt-get download libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 nlohmann-json3-dev \
  qt6-base-dev qt6-base-dev-tools libqt6core6 libqt6test6 libicu72 libdouble-conversion3 libb2-1 libpcre2-16-0 libglib2.0-0 qmake6 qmake6-bin
ls -la
