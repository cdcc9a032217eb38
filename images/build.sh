#!/usr/bin/env bash
# Build the CPU image (and, where no container registry can be reached, its base) from this repository:
#   images/build.sh            -> the CPU image, tagged as images/refs.env names it, its size, and a
#                                 CycloneDX SBOM of its Python environment in images/build/sbom.cdx.json
# Settings (environment):
#   BASE_IMAGE      the base to build on. Default: the official Python image when it can be pulled or is
#                   present, else a Debian bookworm + Python 3.11 root file system made here from Debian's
#                   own packages (mmdebstrap), built once and reused while its recipe is unchanged.
#   TORCH_PIP_ARGS  where pip takes the CPU torch wheel. Default: PyTorch's CPU index; when this
#                   machine's pip is configured with a folder holding torch 2.13.0's CPU wheel
#                   (find-links), that wheel, mounted offline.
#   PIP_CA          a CA bundle for pip inside the build (a build secret, never in a layer). Default: the
#                   bundle this machine's pip is configured with (`pip config get global.cert`), if any.
#   CPU_IMAGE       the tag. Default: CHAMPION_CPU_IMAGE from images/refs.env.
#   DOCKER          the Docker CLI. Default: the first one on this machine that can build with BuildKit.
set -euo pipefail
cd "$(dirname "$0")/.."

OFFICIAL_BASE=python:3.11.7-slim-bookworm
# The Debian base's recipe; its tag carries the recipe's digest, so a changed recipe builds a new base.
DEBIAN_SUITE=bookworm
DEBIAN_PACKAGES=python3.11,python3.11-venv,ca-certificates

say() { printf '%s\n' "$*" >&2; }

buildkit_cli() {
  # BuildKit builds (secret and bind mounts) need either a CLI with the buildx plugin, or a CLI older
  # than 23 whose built-in builder is BuildKit (Debian's docker.io 20.10).
  local cli major
  for cli in ${DOCKER:-} docker /usr/bin/docker; do
    command -v "$cli" >/dev/null 2>&1 || continue
    if "$cli" buildx version >/dev/null 2>&1; then echo "$cli"; return; fi
    major=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
    if [[ "$major" =~ ^[0-9]+$ ]] && ((major < 23)); then echo "$cli"; return; fi
  done
  say "images: no Docker CLI here can build with BuildKit. Install Debian's docker.io (apt-get install docker.io)"
  say "        or the buildx plugin, and start dockerd."
  exit 2
}

DOCKER=$(buildkit_cli)
export DOCKER_BUILDKIT=1
if ! "$DOCKER" info >/dev/null 2>&1; then
  say "images: the Docker engine does not answer ($DOCKER info failed). Start dockerd as root and retry."
  exit 2
fi

debian_base() {
  local digest tag
  digest=$(printf '%s %s' "$DEBIAN_SUITE" "$DEBIAN_PACKAGES" | sha256sum | cut -c1-12)
  tag="champion-base:$DEBIAN_SUITE-py3.11-$digest"
  if "$DOCKER" image inspect "$tag" >/dev/null 2>&1; then
    say "images: base $tag (reused)"
  else
    command -v mmdebstrap >/dev/null 2>&1 || {
      say "images: no $OFFICIAL_BASE and no mmdebstrap to make a base from Debian's packages:"
      say "        apt-get install mmdebstrap, or set BASE_IMAGE to a Debian bookworm image with Python 3.11."
      exit 2
    }
    say "images: building base $tag from Debian's packages ($DEBIAN_PACKAGES)"
    mmdebstrap --quiet --variant=apt --include="$DEBIAN_PACKAGES" "$DEBIAN_SUITE" - \
      | "$DOCKER" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$tag" >/dev/null
  fi
  echo "$tag"
}

if [[ -z "${BASE_IMAGE:-}" ]]; then
  if "$DOCKER" image inspect "$OFFICIAL_BASE" >/dev/null 2>&1 || "$DOCKER" pull -q "$OFFICIAL_BASE" >/dev/null 2>&1; then
    BASE_IMAGE=$OFFICIAL_BASE
  else
    say "images: $OFFICIAL_BASE cannot be pulled here; using a Debian base instead"
    BASE_IMAGE=$(debian_base)
  fi
fi

# A setting of this machine's pip (any scope: `pip config get` misses some), e.g. `pip_setting cert`.
pip_setting() {
  { python3 -m pip config list 2>/dev/null || true; } | sed -n "s/^[^=]*\\.$1='\\(.*\\)'$/\\1/p" | head -n1
}

if [[ -z "${TORCH_PIP_ARGS:-}" ]]; then
  for folder in $(pip_setting find-links); do
    wheel=$(ls "$folder"/torch-2.13.0+cpu-cp311-*.whl 2>/dev/null | head -n1 || true)
    if [[ -n "$wheel" ]]; then
      cp -l "$wheel" images/wheels/ 2>/dev/null || cp "$wheel" images/wheels/
      TORCH_PIP_ARGS="--no-index --find-links /wheels"
      say "images: torch from $wheel"
      break
    fi
  done
fi

secret_args=()
PIP_CA=${PIP_CA:-$(pip_setting cert)}
if [[ -n "$PIP_CA" && -s "$PIP_CA" ]]; then
  secret_args=(--secret "id=pip_ca,src=$PIP_CA")
fi

set -a
# shellcheck source=images/refs.env
. images/refs.env
set +a
CPU_IMAGE=${CPU_IMAGE:-$CHAMPION_CPU_IMAGE}

build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[[ -n "${TORCH_PIP_ARGS:-}" ]] && build_args+=(--build-arg "TORCH_PIP_ARGS=$TORCH_PIP_ARGS")

started=$SECONDS
mkdir -p images/build
say "images: building $CPU_IMAGE on $BASE_IMAGE"
"$DOCKER" build --progress=plain "${build_args[@]}" "${secret_args[@]}" \
  --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -f images/cpu.Dockerfile -t "$CPU_IMAGE" . >images/build/cpu.log 2>&1 || {
  tail -n 40 images/build/cpu.log >&2
  say "images: the build failed (the whole log: images/build/cpu.log)"
  exit 1
}
# The SBOM of the image's Python environment, from the build stage the image's venv was copied from.
"$DOCKER" build --progress=plain "${build_args[@]}" "${secret_args[@]}" --target sbom-export \
  --output type=local,dest=images/build -f images/cpu.Dockerfile . >images/build/sbom.log 2>&1 || {
  tail -n 20 images/build/sbom.log >&2
  say "images: the SBOM build failed (images/build/sbom.log)"
  exit 1
}
size=$("$DOCKER" image inspect "$CPU_IMAGE" --format '{{.Size}}')
printf '%s\n' "$CPU_IMAGE" >images/build/cpu.ref
say "images: $CPU_IMAGE built in $((SECONDS - started)) s, $((size / 1000000)) MB; SBOM images/build/sbom.cdx.json"
echo "$CPU_IMAGE $size"
