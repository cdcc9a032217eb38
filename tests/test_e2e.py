"""The real promotion pipeline through kfp.local on a small slice: real model, real MLflow, real manifest.

Not proven here: the cluster side (images, GPU scheduling, KServe applying the manifest); those are
checked in the compiled IR (test_compile.py) and against the CRD schema (test_manifests.py).
"""

import json
import subprocess
import sys

import pytest
import yaml

from pipelines.local import PipelineFailed, RunOptions, run_promotion
from serving.manifests import validate_strict
from tests.conftest import REPO

pytestmark = pytest.mark.e2e

LENIENT = "name: lenient\nversion: 1\nmin_examples: 3\nmetrics:\n  semantic_similarity: {direction: higher, floor: 0.3}\n"
IMPOSSIBLE = "name: impossible\nversion: 1\nmin_examples: 3\nmetrics:\n  semantic_similarity: {direction: higher, floor: 0.99}\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("policies")
    (folder / "lenient.yaml").write_text(LENIENT)
    (folder / "impossible.yaml").write_text(IMPOSSIBLE)
    return folder


def champion_version(workspace):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    try:
        return str(MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias("champion-qa", "champion").version)
    except MlflowException:
        return None


@pytest.fixture(scope="module")
def promoted(workspace, policies, weights_cache):
    options = RunOptions(limit=4, gate_config=str(policies / "lenient.yaml"), workspace=workspace, weights_cache=weights_cache, batch_size=4)
    return run_promotion(options)


def test_passing_bundle_is_registered_aliased_and_gets_a_valid_manifest(promoted, workspace):
    assert promoted["decision"] == "promoted" and promoted["reasons"] == ["every check passed"]
    assert set(promoted["metrics"]) >= {"semantic_similarity", "exact_match", "token_f1"}
    assert promoted["metrics"]["semantic_similarity"] > 0.3
    assert champion_version(workspace) == promoted["model_version"]
    manifest = yaml.safe_load(open(promoted["reports"]["manifest"]))
    validate_strict(manifest)
    annotations = manifest["metadata"]["annotations"]
    assert annotations["champion.io/bundle-id"] == promoted["bundle_id"]
    assert annotations["champion.io/mlflow-model"] == f"champion-qa/{promoted['model_version']}"
    decision = json.load(open(promoted["reports"]["decision"]))
    assert decision["passed"] is True and decision["n_examples"] == 4
    scores = [json.loads(line) for line in open(promoted["reports"]["scores"])]
    assert len(scores) == 4 and all("semantic_similarity" in row for row in scores)
    assert "PROMOTED" in open(promoted["reports"]["gate_report"]).read()


def test_rejected_bundle_leaves_the_alias_where_it_was(promoted, workspace, policies, weights_cache):
    before = champion_version(workspace)
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--limit", "4", "--gate-config", str(policies / "impossible.yaml"), "--prompt", "qa-oneline",
         "--workspace", str(workspace), "--weights-cache", str(weights_cache), "--json", "--fail-on-reject"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    summary = json.loads(result.stdout)  # stdout is exactly one JSON object: progress went to stderr
    assert summary["decision"] == "rejected"
    assert any("semantic_similarity" in reason and "floor 0.990" in reason for reason in summary["reasons"])
    assert summary["deployment"] == "skipped" and summary["reports"]["manifest"] is None
    assert summary["model_version"] != before
    assert champion_version(workspace) == before
    assert {"bundle_id", "decision", "reasons", "metrics", "reports"} <= set(summary)


def test_bad_data_fails_with_the_row_named_and_promotes_nothing(workspace, tmp_path, weights_cache, promoted):
    before = champion_version(workspace)
    data = tmp_path / "bad.jsonl"
    data.write_text('{"question": "What is 2+2?", "reference": "4"}\n{"question": "Legs on a spider?", "reference": 8}\n')
    with pytest.raises(PipelineFailed, match=r"row 2, column 'reference': expected text") as info:
        run_promotion(RunOptions(data=str(data), limit=2, workspace=workspace, weights_cache=weights_cache))
    assert "full log" in info.value.fix
    assert champion_version(workspace) == before


def test_cli_reports_bad_input_before_running(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--data", str(tmp_path / "missing.jsonl"), "--workspace", str(tmp_path / "ws")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "fix:" in result.stderr
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--prompt", "qa-concize", "--workspace", str(tmp_path / "ws")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "qa-concise" in result.stderr
