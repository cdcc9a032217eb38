#!/usr/bin/env bash
# Compile every pipeline to dist/pipelines/<name>.yaml and every component to dist/components/<name>.yaml.
# Output is byte-identical from run to run; each file is loaded back with kfp as a check.
# Images: set CHAMPION_CPU_IMAGE / CHAMPION_GPU_IMAGE (prefer digests: repo@sha256:...).
set -euo pipefail
cd "$(dirname "$0")"
CHAMPION="${CHAMPION:-.venv/bin/champion}"
if [ ! -x "$CHAMPION" ]; then
  echo "compile.sh: $CHAMPION not found; run 'make setup' first (or set CHAMPION=path/to/champion)." >&2
  exit 2
fi
exec "$CHAMPION" compile --output "${1:-dist}"
