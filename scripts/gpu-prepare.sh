#!/usr/bin/env bash
# Run HERE before a GPU-machine call: exports the committed tree (HEAD, without work in progress) into
# .gpu-tree/ (git-ignored) with the Debian packages (.debs, from scripts/gpu-gather-debs.sh) and a sample of the
# default corpus for scripts/check_hf_compat.py. HEDGELAB_GPU_WORKTREE=1 exports the working tree instead of
# HEAD; HEDGELAB_GPU_CORPUS=1 adds the whole default corpus (data/kjv.txt) for demo-preset runs there. Name `.gpu-tree` in the call's `carry` and run, there:
#   cd .gpu-tree && bash scripts/gpu-build.sh && python3 scripts/check_hf_compat.py \
#       build-gpu/app/cli/hedgelab-cli resources/demo-teacher sample.txt
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .debs ] || bash scripts/gpu-gather-debs.sh
rm -rf .gpu-tree
mkdir -p .gpu-tree
if [ "${HEDGELAB_GPU_WORKTREE:-0}" = 1 ]; then
  # The working tree as it is (tracked and untracked files git does not ignore): for trying work in progress.
  git ls-files -co --exclude-standard -z | tar --null -T - -c | tar -x -C .gpu-tree
else
  git archive HEAD | tar -x -C .gpu-tree
fi
cp -r .debs .gpu-tree/.debs
corpus="${1:-data/kjv.txt}"
[ -f "$corpus" ] || bash scripts/extract-kjv.sh
head -c 20000 "$corpus" > .gpu-tree/sample.txt
if [ "${HEDGELAB_GPU_CORPUS:-0}" = 1 ]; then  # the whole default corpus, for runs of the demo preset there
  mkdir -p .gpu-tree/data && cp "$corpus" .gpu-tree/data/kjv.txt
fi
du -sh .gpu-tree
