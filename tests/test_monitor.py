"""The scheduled monitor decides through the gate engine: same tables, same verdict. Real sqlite MLflow."""

import numpy as np
import pytest

from champion.errors import ConfigError
from evaluators.config import load_evaluator_config
from evaluators.gate import decide
from evaluators.policy import load_policy
from registry.monitoring import ChampionRegressed, monitor_champion, monitoring_decision  # noqa: F401

POLICY = """name: watch
version: 1
min_examples: 20
metrics:
  semantic_similarity: {direction: higher, floor: 0.3, margin: 0.05}
  token_f1: {direction: higher, floor: 0.1, margin: 0.05}
slices:
  math: {min_examples: 5}
"""
METRICS = load_evaluator_config("default").metric_catalog()


def rows(shift=0.0, n=40, seed=0, prefix="q", math_shift=0.0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.4, 0.8, n)
    return [
        {
            "id": f"{prefix}{i}",
            "tags": ["math"] if i < 10 else ["geo"],
            "semantic_similarity": float(base[i] + shift + (math_shift if i < 10 else 0.0)),
            "token_f1": float(base[i] / 2 + shift),
        }
        for i in range(n)
    ]


@pytest.fixture
def policy_path(tmp_path):
    path = tmp_path / "watch.yaml"
    path.write_text(POLICY)
    return str(path)


def monitor(tmp_path, policy_path, table, **extra):
    return monitor_champion(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        registered_model_name="qa",
        champion_version="3",
        bundle_id="b" * 64,
        rows=table,
        metrics={},
        drift={},
        policy_ref=policy_path,
        evaluator_config_ref="default",
        **extra,
    )


@pytest.mark.parametrize("shift, math_shift", [(0.0, 0.0), (-0.2, 0.0), (0.0, -0.3), (-0.03, 0.0)])
def test_the_monitor_and_the_gate_agree_on_the_same_tables(tmp_path, policy_path, shift, math_shift):
    previous, current = rows(), rows(shift, seed=0, math_shift=math_shift)
    policy = load_policy(policy_path)
    gate = decide(current, policy, champion_table=previous, metrics=METRICS)
    first = monitor(tmp_path, policy_path, previous)
    assert first.healthy and first.mode == "bootstrap" and first.previous_run is None
    second = monitor(tmp_path, policy_path, current)
    assert second.previous_run == first.run_id and second.mode == "paired"
    assert second.healthy == gate.passed
    assert [(c["metric"], c.get("slice"), c["test"], c["status"]) for c in second.checks] == [
        (c.metric, c.slice, c.test, c.status) for c in gate.checks
    ]


def test_a_regression_alerts_with_the_engines_reasons_and_records_the_scores(tmp_path, policy_path):
    monitor(tmp_path, policy_path, rows())
    alert = monitor(tmp_path, policy_path, rows(-0.2))
    assert not alert.healthy and any("worse than the champion beyond the margin" in r for r in alert.reasons)
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = MlflowClient(tracking_uri=uri).get_run(alert.run_id)
    assert run.data.tags["champion.monitor_status"] == "alert" and run.data.tags["champion.gate"] == "failed"


def test_a_changed_evaluation_set_is_compared_unpaired_and_says_so(tmp_path, policy_path):
    monitor(tmp_path, policy_path, rows())
    later = monitor(tmp_path, policy_path, rows(prefix="new-", seed=1))
    assert later.mode == "unpaired"
    comparison = next(c for c in later.checks if c["test"] == "non-inferiority" and c.get("slice") is None)
    assert "two-sample" in comparison["method"]


def test_superiority_is_refused_in_a_monitoring_policy(tmp_path):
    path = tmp_path / "superior.yaml"
    path.write_text(
        "name: s\nversion: 1\nmin_examples: 5\nmetrics:\n  token_f1: {direction: higher, floor: 0.1, require_superiority: true}\n"
    )
    with pytest.raises(ConfigError, match="never be superior to itself"):
        monitor(tmp_path, str(path), rows())
