#!/usr/bin/env bash
# The GPU image cannot be built here (a CUDA base, vLLM's wheels), but its Python requirements can be
# resolved: champion's requirements (pyproject.toml, extras vllm and cloud) together with vLLM 0.33.0 and
# the GPU image's pins (images/gpu-constraints.txt), by pip's own resolver in a dry run that installs
# nothing. A conflicting pin fails here, not on a cluster.
#   images/check-gpu-requirements.sh            resolve; exit 1 with pip's reason on a conflict
#   images/check-gpu-requirements.sh --update   resolve without the pins and write them anew
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
report=$(mktemp)
trap 'rm -f "$report"' EXIT
pins=(-c images/gpu-constraints.txt)
[[ "${1:-}" == "--update" ]] && pins=()
if ! "$PYTHON" -m pip install --dry-run --ignore-installed --quiet --disable-pip-version-check \
  --report "$report" "${pins[@]}" "vllm==0.33.0" ".[vllm,cloud]" 2> >(grep -v "is ignored: it is neither" >&2); then
  echo "gpu image: champion's requirements and vLLM 0.33.0 do not resolve together with images/gpu-constraints.txt" >&2
  echo "           (pip's reason above). Change the conflicting pin, or run $0 --update after a deliberate change." >&2
  exit 1
fi
"$PYTHON" - "$report" "${1:-}" <<'PY'
import json, sys
installs = json.load(open(sys.argv[1]))["install"]
pins = sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in installs if i["metadata"]["name"] != "champion")
versions = dict(pins)
if sys.argv[2] == "--update":
    path = "images/gpu-constraints.txt"
    head = "".join(line for line in open(path) if line.startswith("#"))
    open(path, "w").write(head + "".join(f"{name}=={version}\n" for name, version in pins))
print(f"gpu image: {len(pins)} packages resolve together (vllm {versions['vllm']}, torch {versions['torch']}, "
      f"transformers {versions['transformers']})")
PY
