#!/usr/bin/env bash
# Writes the default corpus, the King James Bible from Debian's bible-kjv package, to data/kjv.txt under the
# repository root (or to the path given as $1): one verse per line, the "Ge1:1 " references stripped.
# The text is generated here on each machine and never committed (data/ is git-ignored).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/data/kjv.txt}"

if ! command -v bible >/dev/null 2>&1; then
  echo "extract-kjv.sh: the 'bible' program is missing; install it with: sudo apt-get install bible-kjv" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
tmp="$(mktemp "$out.tmp.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

# Every verse as "REF TEXT"; the reference ends at the first space.
bible -f "gen1:1-rev22:21" </dev/null | sed -E 's/^[^ ]* //' >"$tmp"

verses="$(wc -l <"$tmp")"
if [ "$verses" -ne 31102 ]; then
  echo "extract-kjv.sh: expected 31102 verses from 'bible', got $verses; is bible-kjv complete?" >&2
  exit 1
fi
if grep -qE '^[0-9]?[A-Z][a-z]*[0-9]+:[0-9]+ ' "$tmp"; then
  echo "extract-kjv.sh: some verse references were not stripped" >&2
  exit 1
fi

chmod 644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "wrote $out ($verses verses, $(wc -c <"$out") bytes)"
