#!/usr/bin/env bash
# Compile every pipeline to dist/pipelines/<name>.yaml and every component to dist/components/<name>.yaml.
# Output is byte-identical from run to run; each file is loaded back with kfp as a check.
# Images come from images/refs.env (the one place they are kept; set the *_DIGEST lines after
# pushing so the IR names images by digest). Environment variables of the same names override it,
# e.g. CHAMPION_GPU_IMAGE_DIGEST=sha256:… ./compile.sh. CHAMPION_WEIGHTS_PVC=<claim> mounts a
# weights-cache PVC on the weight steps.
set -euo pipefail
cd "$(dirname "$0")"
CHAMPION="${CHAMPION:-.venv/bin/champion}"
if [ ! -x "$CHAMPION" ]; then
  echo "compile.sh: $CHAMPION not found; run 'make setup' first (or set CHAMPION=path/to/champion)." >&2
  exit 2
fi
exec "$CHAMPION" compile --output "${1:-dist}"
