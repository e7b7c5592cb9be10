#!/usr/bin/env bash
# Installs the Loki and PromQL grammars (npm) that the dashboard tests parse queries with.
set -euo pipefail
dir="$(dirname "$0")/../tests/js"
[ -f "$dir/package.json" ] || exit 0
command -v npm >/dev/null || { echo "obsbox: npm missing; LogQL parsing tests will say so" >&2; exit 0; }
if [ ! -d "$dir/node_modules" ] || [ "$dir/package.json" -nt "$dir/node_modules" ]; then
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules)
fi
