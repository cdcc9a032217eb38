import math

import pytest

from champion.errors import ConfigError
from evaluators.gate import GatePolicy, decide, load_policy, markdown_report

POLICY = GatePolicy.model_validate(
    {"name": "t", "version": 1, "min_examples": 3, "metrics": {"sim": {"direction": "higher", "floor": 0.5}, "latency": {"direction": "lower", "floor": 2.0}}}
)


def table(sims, latencies):
    return [{"id": str(i), "sim": s, "latency": l} for i, (s, l) in enumerate(zip(sims, latencies))]


def test_passes_when_every_floor_is_met():
    decision = decide(table([0.6, 0.7, 0.8], [1.0, 1.5, 1.0]), POLICY)
    assert decision.passed and decision.label == "promoted"
    assert decision.reasons == ["every check passed"]


def test_fails_below_a_floor_and_says_which():
    decision = decide(table([0.2, 0.3, 0.4], [1.0, 1.0, 1.0]), POLICY)
    assert not decision.passed
    assert decision.reasons == ["sim: 0.300 < floor 0.500"]


def test_lower_is_better_metric_is_a_ceiling():
    decision = decide(table([0.9, 0.9, 0.9], [3.0, 3.0, 3.0]), POLICY)
    assert not decision.passed and "latency: 3.000 > floor 2.000" in decision.reasons


def test_too_few_examples_fail():
    decision = decide(table([0.9, 0.9], [1.0, 1.0]), POLICY)
    assert not decision.passed and decision.reasons == ["2 examples (need at least 3)"]


def test_nan_fails_closed():
    decision = decide(table([0.9, math.nan, 0.9], [1.0, 1.0, 1.0]), POLICY)
    assert not decision.passed and "NaN" in decision.reasons[0]


def test_missing_metric_fails_closed():
    decision = decide([{"id": str(i), "sim": 0.9} for i in range(3)], POLICY)
    assert not decision.passed and "latency: missing" in decision.reasons[0]


def test_report_states_decision_and_reasons():
    report = markdown_report(decide(table([0.2, 0.3, 0.4], [1.0, 1.0, 1.0]), POLICY), "abc123", "p@1")
    assert "REJECTED" in report and "sim: 0.300 < floor 0.500" in report and "`abc123`" in report


def test_packaged_policy_loads():
    policy = load_policy("default")
    assert policy.min_examples >= 20 and "semantic_similarity" in policy.metrics
    assert load_policy("default").digest == policy.digest


@pytest.mark.parametrize(
    "body, message",
    [
        ("name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: {direction: higher, floor: 0.5, flor: 1}}\n", "flor"),
        ("name: x\nversion: 1\nmin_examples: 0\nmetrics: {sim: {direction: higher, floor: 0.5}}\n", "min_examples"),
        ("name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: {direction: up, floor: 0.5}}\n", "direction"),
        ("name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: {direction: higher, floor: .nan}}\n", "floor"),
        ("name: x\nversion: 1\nmin_examples: 3\nmetrics: {}\n", "metrics"),
        ("name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_policies_name_the_field(tmp_path, body, message):
    path = tmp_path / "gate.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_policy(str(path))


def test_unknown_policy_lists_packaged_ones():
    with pytest.raises(ConfigError, match="default"):
        load_policy("strictest")
