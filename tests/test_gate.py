"""The gate engine: held-out statistical cases, properties (hypothesis) and policy validation."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from champion.errors import ConfigError
from evaluators.catalog import MetricInfo
from evaluators.config import load_evaluator_config
from evaluators.gate import decide, markdown_report
from evaluators.policy import GatePolicy, check_against, load_policy, policy_problems

DEFAULT_METRICS = load_evaluator_config("default").metric_catalog()


def policy(metrics, **extra):
    return GatePolicy.model_validate({"name": "t", "version": 1, "min_examples": 3, **extra, "metrics": metrics})


FLOORS = policy(
    {
        "sim": {"direction": "higher", "floor": 0.5, "compare": False},
        "latency": {"direction": "lower", "floor": 2.0, "compare": False},
    }
)


def table(sims, latencies):
    return [{"id": str(i), "sim": s, "latency": lat} for i, (s, lat) in enumerate(zip(sims, latencies))]


def paired_tables(shift, n=60, seed=0, metric="sim"):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.8, n)
    champion = [{"id": f"q{i}", metric: float(base[i])} for i in range(n)]
    challenger = [{"id": f"q{i}", metric: float(base[i] + shift + rng.normal(0, 0.02))} for i in range(n)]
    return challenger, champion


PAIRED = policy({"sim": {"direction": "higher", "floor": 0.2, "margin": 0.05}}, min_examples=20, seed=1)


# -- floors (the bootstrap rule) ------------------------------------------------------------------


def test_passes_when_every_floor_is_met():
    decision = decide(table([0.6, 0.7, 0.8], [1.0, 1.5, 1.0]), FLOORS)
    assert decision.passed and decision.gate == "passed" and decision.mode == "bootstrap"
    assert decision.reasons[0].startswith("every check passed (no champion yet: bootstrap rule")


def test_fails_below_a_floor_and_a_ceiling_and_says_which():
    decision = decide(table([0.2, 0.3, 0.4], [3.0, 3.0, 3.0]), FLOORS)
    assert not decision.passed and decision.gate == "failed"
    assert decision.reasons == ["sim: mean 0.300 < floor 0.500", "latency: mean 3.000 > ceiling 2.000"]


def test_too_few_examples_fail():
    decision = decide(table([0.9, 0.9], [1.0, 1.0]), FLOORS)
    assert not decision.passed and decision.reasons == ["2 examples (need at least 3)"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None, "0.9", True])
def test_a_bad_score_fails_closed_and_names_the_example(bad):
    rows = table([0.9, 0.9, 0.9], [1.0, 1.0, 1.0])
    rows[1]["sim"] = bad
    decision = decide(rows, FLOORS)
    check = next(c for c in decision.checks if c.metric == "sim")
    assert not decision.passed and check.test == "values" and check.example_ids == ["1"]
    assert "examples 1" in check.reason and "never counted" in check.reason


def test_missing_metric_fails_closed():
    decision = decide([{"id": str(i), "sim": 0.9} for i in range(3)], FLOORS)
    assert not decision.passed and "latency: missing" in decision.reasons[0]


def test_duplicate_ids_fail_closed():
    rows = table([0.9, 0.9, 0.9], [1.0, 1.0, 1.0])
    rows[2]["id"] = "0"
    assert "not unique" in " ".join(decide(rows, FLOORS).reasons)


def test_nothing_voted_is_a_rejection():
    # A one-metric policy without a floor on a first run: nothing can vote.
    lone = policy({"sim": {"direction": "higher", "margin": 0.05}})
    decision = decide(table([0.9, 0.9, 0.9], [1, 1, 1]), lone)
    assert not decision.passed and any(r.startswith("nothing voted") for r in decision.reasons)


def test_a_judge_only_policy_with_an_excluded_judge_rejects():
    judge_only = policy({"judge_correctness": {"direction": "higher", "floor": 0.0, "margin": 0.05}})
    rows = [{"id": str(i), "judge_correctness": 1.0} for i in range(5)]
    decision = decide(
        rows,
        judge_only,
        metrics=DEFAULT_METRICS,
        judge_reliable=False,
        judge_reasons=["calibration accuracy 0.40 < 0.80"],
    )
    assert not decision.passed
    assert [c.status for c in decision.checks if c.metric == "judge_correctness"] == ["excluded"]
    assert any("nothing voted" in r for r in decision.reasons) and any(
        "calibration accuracy" in r for r in decision.reasons
    )


def test_ragas_llm_metrics_are_judged_and_excluded_with_the_judge():
    mixed = policy(
        {
            "ragas_answer_accuracy": {"direction": "higher", "floor": 0.9, "margin": 0.05},
            "token_f1": {"direction": "higher", "floor": 0.1, "margin": 0.05},
        }
    )
    rows = [{"id": str(i), "ragas_answer_accuracy": 0.0, "token_f1": 0.5} for i in range(5)]
    decision = decide(rows, mixed, metrics=DEFAULT_METRICS, judge_reliable=False)
    assert decision.passed and next(c for c in decision.checks if c.metric == "ragas_answer_accuracy").excluded
    assert not decide(rows, mixed, metrics=DEFAULT_METRICS, judge_reliable=True).passed


@pytest.mark.parametrize("required", [False, True])
def test_a_required_judged_metric_fails_instead_of_being_excluded(required):
    rules = {
        "judge_correctness": {"direction": "higher", "floor": 0.5, "margin": 0.05, "required": required},
        "token_f1": {"direction": "higher", "floor": 0.1, "margin": 0.05},
    }
    rows = [{"id": str(i), "judge_correctness": 1.0, "token_f1": 0.5} for i in range(5)]
    decision = decide(rows, policy(rules), metrics=DEFAULT_METRICS, judge_reliable=False, judge_reasons=["tone 0.2"])
    check = next(c for c in decision.checks if c.metric == "judge_correctness")
    # Optional: the other metrics decide alone. Required: the decision rests on it, so it cannot be made.
    assert decision.passed is not required and check.status == ("fail" if required else "excluded")
    assert decide(rows, policy(rules), metrics=DEFAULT_METRICS, judge_reliable=True).passed


# -- against a champion -------------------------------------------------------------------------


def test_clear_win_passes_paired():
    challenger, champion = paired_tables(+0.10)
    decision = decide(challenger, PAIRED, champion_table=champion)
    assert decision.passed and decision.mode == "paired"
    sim = next(c for c in decision.checks if c.test == "non-inferiority")
    assert sim.ci_low > 0.05 and sim.status == "pass" and "bound clears the margin" in sim.reason


def test_clear_loss_is_worse_beyond_the_margin():
    challenger, champion = paired_tables(-0.20)
    decision = decide(challenger, PAIRED, champion_table=champion)
    check = next(c for c in decision.checks if c.test == "non-inferiority")
    assert (
        not decision.passed and check.status == "fail" and "worse than the champion beyond the margin" in check.reason
    )


def test_an_unproven_challenger_is_inconclusive_not_worse():
    # Held out: -0.03 with an interval that straddles the margin 0.05 on 40 examples.
    rng = np.random.default_rng(4)
    champion = rng.uniform(0.3, 0.8, 40)
    noise = rng.normal(0, 0.12, 40)
    challenger = champion - 0.03 + noise - noise.mean()
    rows = [{"id": f"q{i}", "sim": float(v)} for i, v in enumerate(challenger)]
    base = [{"id": f"q{i}", "sim": float(v)} for i, v in enumerate(champion)]
    check = next(c for c in decide(rows, PAIRED, champion_table=base).checks if c.test == "non-inferiority")
    assert check.status == "inconclusive" and check.ci_low < -0.05 < check.ci_high
    assert "worse than the champion" not in check.reason and "inconclusive" in check.reason
    assert check.settling_examples > 40 and f"about {check.settling_examples} examples would settle it" in check.reason
    assert check.detectable == pytest.approx(check.difference - check.ci_low)


def test_small_loss_inside_the_margin_is_not_inferior():
    challenger, champion = paired_tables(-0.01)
    assert decide(challenger, PAIRED, champion_table=champion).passed


def test_superiority_is_honoured_on_any_metric_that_declares_it():
    strict = policy(
        {
            "sim": {"direction": "higher", "floor": 0.2, "margin": 0.05},
            "f1": {"direction": "higher", "require_superiority": True},
        },
        min_examples=20,
        primary="sim",
    )
    challenger, champion = paired_tables(0.0)
    for a, b in zip(challenger, champion):
        a["f1"] = b["f1"] = a["sim"]
    decision = decide(challenger, strict, champion_table=champion)
    check = next(c for c in decision.checks if c.metric == "f1")
    assert not decision.passed and check.test == "superiority" and check.status == "inconclusive"
    for row in challenger:
        row["f1"] += 0.05
    assert decide(challenger, strict, champion_table=champion).passed


def test_the_held_out_binary_case_is_rejected():
    # n=40, the champion passes 30; the challenger loses 3 of them and gains none (-7.5 points), margin 0.05.
    binary = policy({"em": {"direction": "higher", "kind": "binary", "margin": 0.05}}, min_examples=20)
    champion = [{"id": f"q{i}", "em": 1.0 if i < 30 else 0.0} for i in range(40)]
    challenger = [{"id": f"q{i}", "em": 0.0 if i < 3 else row["em"]} for i, row in enumerate(champion)]
    decision = decide(challenger, binary, champion_table=champion)
    check = next(c for c in decision.checks if c.metric == "em")
    assert not decision.passed and check.test == "non-inferiority" and "Tango" in check.method
    assert check.difference == pytest.approx(-0.075) and check.ci_low < -0.05


def test_binary_metric_with_a_nan_fails_instead_of_passing():
    binary = policy({"em": {"direction": "higher", "kind": "binary", "margin": 0.05}}, min_examples=3)
    champion = [{"id": str(i), "em": 1.0} for i in range(10)]
    challenger = [{"id": str(i), "em": math.nan if i == 4 else 1.0} for i in range(10)]
    decision = decide(challenger, binary, champion_table=champion)
    assert not decision.passed and "examples 4" in decision.reasons[0]


def test_binary_kind_on_non_binary_scores_fails_with_ids():
    binary = policy({"em": {"direction": "higher", "kind": "binary", "margin": 0.05}})
    rows = [{"id": str(i), "em": 0.5} for i in range(4)]
    decision = decide(rows, binary, champion_table=[dict(r) for r in rows])
    assert not decision.passed and "not exactly 0 or 1" in decision.reasons[0]


def test_a_challenger_30_percent_slower_is_rejected_by_a_relative_latency_margin():
    latency = policy({"latency_s": {"direction": "lower", "margin_relative": 0.10}}, min_examples=20)
    rng = np.random.default_rng(8)
    base = rng.uniform(0.5, 1.5, 50)
    champion = [{"id": str(i), "latency_s": float(v)} for i, v in enumerate(base)]
    slower = [{"id": str(i), "latency_s": float(v * 1.3 * rng.uniform(0.97, 1.03))} for i, v in enumerate(base)]
    check = next(c for c in decide(slower, latency, champion_table=champion).checks if c.metric == "latency_s")
    assert check.status == "fail" and check.scale == "relative" and check.difference == pytest.approx(0.30, abs=0.02)
    assert "+30" in check.reason and "margin 10% of the champion's mean" in check.reason
    same = [{"id": str(i), "latency_s": float(v * rng.uniform(0.97, 1.03))} for i, v in enumerate(base)]
    assert decide(same, latency, champion_table=champion).passed


def test_a_regression_confined_to_one_slice_fails_while_the_overall_mean_passes():
    sliced = policy(
        {"sim": {"direction": "higher", "floor": 0.2, "margin": 0.05}},
        min_examples=20,
        slices={"math": {"min_examples": 8}, "geo": {"min_examples": 8}},
    )
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.8, 100)
    tags = ["math" if i < 12 else "geo" for i in range(100)]
    champion = [{"id": f"q{i}", "tags": [tags[i]], "sim": float(base[i])} for i in range(100)]
    challenger = [
        {
            "id": f"q{i}",
            "tags": [tags[i]],
            "sim": float(base[i] - (0.30 if tags[i] == "math" else -0.01) + rng.normal(0, 0.01)),
        }
        for i in range(100)
    ]
    decision = decide(challenger, sliced, champion_table=champion)
    overall = next(c for c in decision.checks if c.metric == "sim" and c.slice is None and c.test == "non-inferiority")
    math_slice = next(c for c in decision.checks if c.slice == "math" and c.test == "non-inferiority")
    assert overall.status == "pass" and math_slice.status == "fail" and not decision.passed
    assert "sim [slice math]" in math_slice.reason
    assert "## Slices" in markdown_report(decision, "b", "p@1")


def test_a_declared_slice_with_too_few_examples_fails_closed():
    sliced = policy(
        {"sim": {"direction": "higher", "floor": 0.2, "margin": 0.05}}, slices={"rare": {"min_examples": 5}}
    )
    rows = [{"id": str(i), "tags": ["rare"] if i == 0 else [], "sim": 0.9} for i in range(10)]
    decision = decide(rows, sliced)
    assert not decision.passed and "slice rare: 1 examples carry the tag" in decision.reasons[0]


def test_champion_on_other_examples_cannot_be_compared_but_the_monitor_may_go_unpaired():
    challenger, champion = paired_tables(+0.1)
    decision = decide(challenger, PAIRED, champion_table=champion[:-5])
    assert not decision.passed and any("not scored on the same examples" in r for r in decision.reasons)
    other = [{**row, "id": f"old-{row['id']}"} for row in champion]
    unpaired = decide(challenger, PAIRED, champion_table=other, allow_unpaired=True)
    assert (
        unpaired.mode == "unpaired"
        and "two-sample" in next(c for c in unpaired.checks if c.test == "non-inferiority").method
    )


def test_holm_is_stated_and_levels_shrink_with_more_tests():
    two = policy(
        {"sim": {"direction": "higher", "margin": 0.05}, "f1": {"direction": "higher", "margin": 0.05}}, min_examples=20
    )
    challenger, champion = paired_tables(+0.1)
    for a, b in zip(challenger, champion):
        a["f1"], b["f1"] = a["sim"], b["sim"]
    decision = decide(challenger, two, champion_table=champion)
    levels = sorted(c.level for c in decision.checks if c.level is not None)
    assert levels == [pytest.approx(0.025), pytest.approx(0.05)] and "Holm" in decision.multiplicity
    bonferroni = decide(challenger, two.model_copy(update={"multiplicity": "bonferroni"}), champion_table=champion)
    assert [c.level for c in bonferroni.checks if c.level is not None] == [
        pytest.approx(0.025)
    ] * 2 and "Bonferroni" in bonferroni.multiplicity


def test_same_seed_same_decision():
    challenger, champion = paired_tables(-0.04, seed=5)
    assert decide(challenger, PAIRED, champion_table=champion) == decide(challenger, PAIRED, champion_table=champion)


def test_report_states_gate_decision_and_reasons():
    report = markdown_report(decide(table([0.2, 0.3, 0.4], [1.0, 1.0, 1.0]), FLOORS), "abc123", "p@1")
    assert "gate **FAILED**: rejected" in report and "sim: mean 0.300 < floor 0.500" in report and "`abc123`" in report


# -- properties -----------------------------------------------------------------------------------

scores = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=20, max_size=80)


@settings(max_examples=40, deadline=None)
@given(scores)
def test_identical_tables_above_the_floors_always_pass(values):
    rows = [{"id": str(i), "sim": v} for i, v in enumerate(values)]
    lenient = policy({"sim": {"direction": "higher", "floor": 0.0, "margin": 0.01}}, min_examples=20)
    assert decide(rows, lenient, champion_table=[dict(r) for r in rows]).passed


@settings(max_examples=25, deadline=None)
@given(st.floats(0.08, 0.4), st.integers(0, 1000))
def test_a_challenger_shifted_down_by_more_than_the_margin_never_passes_at_large_n(shift, seed):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.9, 400)
    champion = [{"id": str(i), "sim": float(v)} for i, v in enumerate(base)]
    challenger = [{"id": str(i), "sim": float(v - shift + rng.normal(0, 0.1))} for i, v in enumerate(base)]
    assert not decide(challenger, PAIRED, champion_table=champion).passed


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(0.2, 0.8), min_size=20, max_size=50),
    st.lists(st.floats(0.0, 0.2), min_size=50, max_size=50),
    st.integers(0, 49),
)
def test_the_verdict_is_monotone_in_the_challengers_scores(base, bumps, index):
    champion = [{"id": str(i), "sim": v} for i, v in enumerate(base)]
    challenger = [{"id": str(i), "sim": v - 0.04 + bumps[i]} for i, v in enumerate(base)]
    better = [dict(r) for r in challenger]
    better[index % len(base)]["sim"] += 0.3
    if decide(challenger, PAIRED, champion_table=champion).passed:
        assert decide(better, PAIRED, champion_table=champion).passed


@settings(max_examples=30, deadline=None)
@given(scores, st.integers(0, 79), st.sampled_from([math.nan, math.inf, -math.inf]), st.booleans())
def test_nan_anywhere_fails(values, index, bad, on_champion):
    rows = [{"id": str(i), "sim": v} for i, v in enumerate(values)]
    champion = [dict(r) for r in rows]
    (champion if on_champion else rows)[index % len(values)]["sim"] = bad
    lenient = policy({"sim": {"direction": "higher", "floor": 0.0, "margin": 0.5}}, min_examples=20)
    assert not decide(rows, lenient, champion_table=champion).passed


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.1, 0.9), min_size=20, max_size=60), st.floats(-0.2, 0.2), st.integers(0, 100))
def test_lower_is_better_mirrors_higher_is_better(base, shift, seed):
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 0.05, len(base))
    high = policy({"m": {"direction": "higher", "floor": -5.0, "margin": 0.05}}, min_examples=20)
    low = policy({"m": {"direction": "lower", "floor": 5.0, "margin": 0.05}}, min_examples=20)
    champion = [{"id": str(i), "m": v} for i, v in enumerate(base)]
    challenger = [{"id": str(i), "m": v + shift + noise[i]} for i, v in enumerate(base)]
    mirrored = lambda rows: [{"id": r["id"], "m": -r["m"]} for r in rows]  # noqa: E731
    a = decide(challenger, high, champion_table=champion)
    b = decide(mirrored(challenger), low, champion_table=mirrored(champion))
    assert a.passed == b.passed
    ca, cb = (next(c for c in d.checks if c.test == "non-inferiority") for d in (a, b))
    assert ca.status == cb.status and ca.difference == pytest.approx(-cb.difference)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 12), st.integers(0, 12), st.integers(26, 60))
def test_binary_gate_never_passes_a_challenger_that_lost_more_than_the_margin_allows(gained, lost, n):
    assume(gained + lost <= n and (gained - lost) / n < -0.05)
    binary = policy({"em": {"direction": "higher", "kind": "binary", "margin": 0.05}}, min_examples=20)
    champion = [{"id": str(i), "em": 1.0 if i < lost else 0.0} for i in range(n)]
    challenger = [{"id": str(i), "em": 0.0 if i < lost else (1.0 if i < lost + gained else 0.0)} for i in range(n)]
    assert not decide(challenger, binary, champion_table=champion).passed


# -- policies ---------------------------------------------------------------------------------------


def test_packaged_policy_loads_fits_the_default_config_and_guards_tokens():
    packaged = load_policy("default")
    assert packaged.min_examples >= 20 and "semantic_similarity" in packaged.metrics
    assert packaged.metrics["completion_tokens"].margin_relative is not None
    check_against(packaged, DEFAULT_METRICS)


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: {direction: higher, floor: 0.5, margin: 0.1, flor: 1}}\n",
            "flor",
        ),
        (
            "name: x\nversion: 1\nmin_examples: 0\nmetrics: {sim: {direction: higher, floor: 0.5, margin: 0.1}}\n",
            "min_examples",
        ),
        (
            "name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: {direction: up, floor: 0.5, margin: 0.1}}\n",
            "direction",
        ),
        (
            "name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: {direction: higher, floor: .nan, margin: 0.1}}\n",
            "floor",
        ),
        ("name: x\nversion: 1\nmin_examples: 3\nmetrics: {}\n", "metrics"),
        ("name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: [unclosed\n", "not valid YAML"),
        (
            "name: x\nversion: 1\nmin_examples: 3\nprimary: simm\nmetrics: {sim: {direction: higher, floor: 0.5, margin: 0.1}}\n",
            "did you mean 'sim'",
        ),
        ("name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: {direction: higher, margin: -0.1}}\n", "margin"),
        (
            "name: x\nversion: 1\nmin_examples: 3\nalpha: 0.7\nmetrics: {sim: {direction: higher, margin: 0.1}}\n",
            "alpha",
        ),
        ("name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: {direction: higher, floor: 0.5}}\n", "how much worse"),
        (
            "name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: {direction: higher, margin: 0.1, margin_relative: 0.1}}\n",
            "not both",
        ),
        (
            "name: x\nversion: 1\nmin_examples: 3\nmetrics: {em: {direction: higher, kind: binary, margin_relative: 0.1}}\n",
            "pass-rate points",
        ),
        (
            "name: x\nversion: 1\nmin_examples: 3\nmetrics: {em: {direction: higher, kind: binary, margin: 1.5}}\n",
            "below 1",
        ),
        (
            "name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: {direction: higher, margin: 0.1}}\nmetrics: {sim: {direction: higher, margin: 0.2}}\n",
            "duplicate key 'metrics'",
        ),
        (
            "name: x\nversion: 1\nmin_examples: 3\nmetrics: {sim: {direction: higher, margin: 0.1}}\nslices: {math: {min_examples: 3, metrics: [simm]}}\n",
            "did you mean 'sim'",
        ),
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


@pytest.mark.parametrize(
    "metrics, message",
    [
        ({"semantic_similarty": {"direction": "higher", "margin": 0.05}}, "did you mean 'semantic_similarity'"),
        ({"token_f1": {"direction": "lower", "margin": 0.05}}, "set direction: higher"),
        ({"token_f1": {"direction": "higher", "kind": "binary", "margin": 0.05}}, "not a 0/1 score"),
        ({"token_f1": {"direction": "higher", "margin_relative": 0.1}}, "margin_relative on token_f1"),
        ({"token_f1": {"direction": "higher", "margin": 1.0}}, "whole range"),
        ({"token_f1": {"direction": "higher", "floor": 1.5, "margin": 0.05}}, "outside the metric's range"),
        ({"judge_correctness": {"direction": "higher", "floor": 0.5, "margin": 0.05}}, "nothing would vote"),
        (
            {
                "token_f1": {"direction": "higher", "margin": 0.05},
                "judge_correctness": {"direction": "higher", "require_superiority": True},
            },
            "silently disappear",
        ),
    ],
)
def test_policy_check_against_the_evaluator_config(metrics, message):
    problems = policy_problems(policy(metrics), DEFAULT_METRICS)
    assert any(message in p.problem or message in p.fix for p in problems), [str(p) for p in problems]
    with pytest.raises(ConfigError, match="policy check"):
        check_against(policy(metrics), DEFAULT_METRICS)


def test_exact_match_may_be_binary_and_tokens_relative():
    ok = policy(
        {
            "exact_match": {"direction": "higher", "kind": "binary", "margin": 0.05},
            "completion_tokens": {"direction": "lower", "margin_relative": 0.2},
        }
    )
    assert policy_problems(ok, DEFAULT_METRICS) == []
    assert isinstance(DEFAULT_METRICS["exact_match"], MetricInfo) and DEFAULT_METRICS["exact_match"].binary


def test_every_packaged_policy_fits_its_evaluator_config():
    from evaluators.config import load_evaluator_config
    from evaluators.policy import POLICIES_DIR

    names = sorted(path.stem for path in POLICIES_DIR.glob("*.yaml"))
    assert "sliced" in names and "traffic" in names
    for name in names:  # the traffic policy goes with the traffic (reference-free) evaluator config
        metrics = load_evaluator_config("traffic").metric_catalog() if name == "traffic" else DEFAULT_METRICS
        check_against(load_policy(name), metrics, name)
    assert set(load_policy("sliced").slices) == {"sci", "geo", "math"}
