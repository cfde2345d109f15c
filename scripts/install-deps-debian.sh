#!/usr/bin/env bash
# Installs every Debian 12 package HedgeLab builds, tests and runs with. Needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
  build-essential cmake ninja-build pkg-config git ca-certificates \
  libtorch-dev libopenblas0-pthread \
  qt6-base-dev qt6-base-dev-tools qt6-svg-dev libqt6opengl6-dev libgl-dev libqcustomplot-dev libimgui-dev \
  libhdf5-dev libspdlog-dev nlohmann-json3-dev \
  xvfb xauth bible-kjv desktop-file-utils appstream
