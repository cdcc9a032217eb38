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
    assert decision.passed and decision.label == "promoted" and decision.mode == "bootstrap"
    assert decision.reasons[0].startswith("every check passed (no champion yet: bootstrap rule")


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
    assert "REJECTED" in report and "sim: 0.300 < floor 0.500" in report and "`abc123`" in report and "bootstrap rule" in report


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
        ("name: x\nversion: 1\nmin_examples: 3\nprimary: simm\nmetrics: {sim: {direction: higher, floor: 0.5}}\n", "primary metric 'simm'"),
        ("name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: {direction: higher, margin: -0.1}}\n", "margin"),
        ("name: x\nversion: 1\nmin_examples: 3\nalpha: 0.7\nmetrics: {sim: {direction: higher}}\n", "alpha"),
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


PAIRED = GatePolicy.model_validate(
    {
        "name": "paired", "version": 1, "min_examples": 20, "primary": "sim", "seed": 1,
        "metrics": {"sim": {"direction": "higher", "floor": 0.2, "margin": 0.05}, "em": {"direction": "higher", "kind": "binary"}},
    }
)


def tables(shift, n=60, seed=0, em_lost=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.8, n)
    champion = [{"id": f"q{i}", "sim": float(base[i]), "em": 1.0 if i % 2 else 0.0} for i in range(n)]
    challenger = [{"id": f"q{i}", "sim": float(base[i] + shift + rng.normal(0, 0.02)), "em": (0.0 if i < 2 * em_lost and i % 2 else champion[i]["em"])} for i in range(n)]
    return challenger, champion


def test_clear_win_passes_paired():
    challenger, champion = tables(+0.10)
    decision = decide(challenger, PAIRED, champion_table=champion)
    assert decision.passed and decision.mode == "paired"
    sim = next(c for c in decision.checks if c.metric == "sim" and c.test == "non-inferiority")
    assert sim.ci_low > 0.05 and sim.champion is not None


def test_clear_loss_fails_with_interval_in_the_reason():
    challenger, champion = tables(-0.20)
    decision = decide(challenger, PAIRED, champion_table=champion)
    assert not decision.passed
    assert any("worse than the champion beyond the margin" in r for r in decision.reasons)


def test_small_loss_inside_the_margin_is_not_inferior():
    challenger, champion = tables(-0.01)
    assert decide(challenger, PAIRED, champion_table=champion).passed


def test_superiority_required_rejects_a_tie():
    policy = PAIRED.model_copy(update={"metrics": {"sim": PAIRED.metrics["sim"].model_copy(update={"require_superiority": True})}})
    challenger, champion = tables(0.0)
    decision = decide(challenger, policy, champion_table=champion)
    assert not decision.passed and any("not superior" in r for r in decision.reasons)
    better, champion = tables(+0.05)
    assert decide(better, policy, champion_table=champion).passed


def test_mcnemar_rejects_many_lost_pass_fail_examples():
    challenger, champion = tables(0.0, em_lost=15)
    decision = decide(challenger, PAIRED, champion_table=champion)
    check = next(c for c in decision.checks if c.metric == "em")
    assert not check.passed and "lost 15" in check.reason


def test_nan_in_either_side_fails_closed():
    challenger, champion = tables(+0.1)
    champion[3]["sim"] = float("nan")
    decision = decide(challenger, PAIRED, champion_table=champion)
    assert not decision.passed and any("NaN" in r for r in decision.reasons)


def test_champion_on_other_examples_cannot_be_compared():
    challenger, champion = tables(+0.1)
    decision = decide(challenger, PAIRED, champion_table=champion[:-5])
    assert not decision.passed and any("not scored on the same examples" in r for r in decision.reasons)


def test_too_few_examples_fail_even_when_better():
    challenger, champion = tables(+0.1, n=10)
    assert not decide(challenger, PAIRED, champion_table=champion).passed


def test_same_seed_same_decision_and_intervals():
    challenger, champion = tables(-0.04, seed=5)
    a = decide(challenger, PAIRED, champion_table=champion)
    b = decide(challenger, PAIRED, champion_table=champion)
    assert a == b


def test_unreliable_judge_does_not_vote_in_paired_mode_either():
    policy = PAIRED.model_copy(update={"metrics": {**PAIRED.metrics, "judge_x": PAIRED.metrics["sim"]}})
    challenger, champion = tables(+0.1)
    for row in challenger:
        row["judge_x"] = 0.0  # the judge hates the challenger...
    for row in champion:
        row["judge_x"] = 1.0
    assert decide(challenger, policy, champion_table=champion, judge_reliable=False).passed  # ...but it is not trusted
    assert not decide(challenger, policy, champion_table=champion, judge_reliable=True).passed
