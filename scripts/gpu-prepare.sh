#!/usr/bin/env bash
# Run HERE before a GPU-machine call: exports the committed tree (HEAD, without work in progress) into
# .gpu-tree/ (git-ignored) with the Debian packages (.debs, from scripts/gpu-gather-debs.sh) and a sample of the
# default corpus for scripts/check_hf_compat.py. Name `.gpu-tree` in the call's `carry` and run, there:
#   cd .gpu-tree && bash scripts/gpu-build.sh && python3 scripts/check_hf_compat.py \
#       build-gpu/app/cli/hedgelab-cli resources/demo-teacher sample.txt
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .debs ] || bash scripts/gpu-gather-debs.sh
rm -rf .gpu-tree
mkdir -p .gpu-tree
git archive HEAD | tar -x -C .gpu-tree
cp -r .debs .gpu-tree/.debs
corpus="${1:-data/kjv.txt}"
[ -f "$corpus" ] || bash scripts/extract-kjv.sh
head -c 20000 "$corpus" > .gpu-tree/sample.txt
du -sh .gpu-tree
