"""The sequential gate: anytime-valid confidence sequences, decisions at looks, and planned sample sizes.

The Monte-Carlo tests are a reduced bench/sequential_gate.py: seeded, so they always draw the same samples, with
bounds that hold with a wide Monte-Carlo margin."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from evaluators import sequential
from evaluators.gate import Look, decide
from evaluators.planning import plan
from evaluators.policy import GatePolicy, MetricRule, check_against, load_policy
from tests.conftest import champion_cli

ALPHA = 0.05


def _boundary_pass_rates(reps: int, n: int, looks: list[int], margin: float = 0.1) -> tuple[float, float]:
    """False-promotion rates at the margin (true effect = -margin): the sequence, and naive peeking at fixed-n
    normal intervals at every look."""
    rng = np.random.default_rng(7)
    differences = -margin + 0.6 * (rng.random((reps, n)) - 0.5)  # uniform, mean exactly -margin, within [-1, 1]
    x = sequential.Range(-1.0, 1.0).scale(differences)
    above = sequential.rejects(x, (1.0 - margin) / 2.0, ALPHA, +1)
    z = scipy_stats.norm.ppf(1 - ALPHA)
    peek = np.zeros(reps, dtype=bool)
    for count in looks:
        part = differences[:, :count]
        peek |= part.mean(axis=1) - z * part.std(axis=1, ddof=1) / math.sqrt(count) > -margin
    return float(above[:, -1].mean()), float(peek.mean())


def test_at_the_margin_the_sequence_keeps_its_level_while_peeking_does_not():
    looks = list(range(10, 201, 10))  # twenty looks
    sequential_rate, peeking_rate = _boundary_pass_rates(reps=3000, n=200, looks=looks)
    error = math.sqrt(ALPHA * (1 - ALPHA) / 3000)
    assert sequential_rate <= ALPHA + 3 * error
    assert peeking_rate > ALPHA + 5 * error  # peeking at fixed-n intervals inflates the false promotions


def test_pass_fail_sequences_keep_their_level_at_the_margin():
    rng = np.random.default_rng(3)
    margin, reps = 0.05, 3000
    u = rng.random((reps, 300))
    differences = np.where(u < 0.2, -1.0, np.where(u < 0.35, 1.0, 0.0))  # p01 0.2, p10 0.15: mean exactly -0.05
    above = sequential.rejects(sequential.Range(-1, 1).scale(differences), (1 - margin) / 2, ALPHA, +1)
    assert above[:, -1].mean() <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / reps)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=80),
    st.sampled_from([0.01, 0.05, 0.2]),
)
def test_bounds_are_ordered_tighten_with_more_data_and_agree_with_the_tests(values, alpha):
    x = np.array(values)
    low, high = sequential.bounds(x, alpha)
    assert 0.0 <= low <= high <= 1.0
    low_before, high_before = sequential.bounds(x[:-1], alpha)
    assert low >= low_before - 1e-12 and high <= high_before + 1e-12  # a running intersection only tightens
    # The bounds are exactly the edge of what the one-sided tests have excluded: the lower bound is the largest
    # value shown to be below the mean (the next one up is not), the upper bound the smallest shown above it.
    grid = np.linspace(0.0, 1.0, sequential.GRID)[1:-1]
    if low > 0.0:
        i = int(np.argmin(np.abs(grid - low)))
        assert sequential.rejects(x, grid[i], alpha, +1)[-1]
        assert i + 1 == len(grid) or not sequential.rejects(x, grid[i + 1], alpha, +1)[-1]
    if low < high < 1.0:
        j = int(np.argmin(np.abs(grid - high)))
        assert sequential.rejects(x, grid[j], alpha, -1)[-1]
        assert j == 0 or not sequential.rejects(x, grid[j - 1], alpha, -1)[-1]


@settings(max_examples=40, deadline=None)
@given(st.floats(0.05, 0.95), st.integers(20, 200))
def test_a_constant_sample_is_eventually_located_around_its_value(value, n):
    low, high = sequential.bounds(np.full(n, value), 0.05)
    assert low <= value + 1e-9 and high >= value - 1e-9


def test_fixed_n_size_is_the_normal_approximation_in_closed_form():
    # A paired mean with sd 1, margin 0.1, one-sided 2.5%, power 80%: ((1.95996 + 0.84162) / 0.1)^2 = 784.9
    assert sequential.fixed_n_required(1.0, 0.1, 0.025, 0.8) == 785
    assert sequential.fixed_n_required(0.5, 0.1, 0.025, 0.8) == 197  # a quarter of the variance
    assert sequential.fixed_n_required(1.0, 0.1, 0.025, 0.8, effect=0.1) == 197  # twice the room
    with pytest.raises(ValueError, match="cannot be shown non-inferior"):
        sequential.fixed_n_required(1.0, 0.1, 0.025, 0.8, effect=-0.2)


def test_looks_are_shares_of_the_set_or_blocks():
    assert sequential.looks_at(72, (0.25, 0.5, 0.75, 1.0)) == [18, 36, 54, 72]
    assert sequential.looks_at(72, every=30) == [30, 60, 72]


def _policy(**update) -> GatePolicy:
    fields = dict(
        name="seq",
        version=1,
        min_examples=20,
        sequential=True,
        metrics={"token_f1": MetricRule(direction="higher", floor=0.2, margin=0.3)},
    )
    return GatePolicy(**(fields | update))


def _rows(values, prefix="q"):
    return [{"id": f"{prefix}{i}", "token_f1": float(v)} for i, v in enumerate(values)]


def _run_looks(policy, challenger, champion):
    total = len(challenger)
    counts = sequential.looks_at(total, policy.looks, policy.look_size)
    for index, count in enumerate(counts, 1):
        look = Look(index=index, of=len(counts), examples=count, total=total)
        decision = decide(challenger[:count], policy, champion_table=champion[:count], look=look)
        if decision.gate != "continue":
            return decision
    raise AssertionError("the last look must decide")


def test_a_clearly_worse_challenger_is_rejected_at_the_first_look():
    rng = np.random.default_rng(0)
    champion = _rows(rng.uniform(0.5, 1.0, 200))
    challenger = _rows(np.zeros(200))
    decision = _run_looks(_policy(), challenger, champion)
    assert decision.gate == "failed" and decision.look and decision.look.index == 1
    assert decision.decided_at == "decided at look 1 of 4, 50 of 200 examples"
    worse = [c for c in decision.checks if c.status == "fail"]
    assert {c.test for c in worse} <= {"non-inferiority", "floor"} and worse
    assert all("anytime-valid" in c.reason for c in worse)


def test_the_live_bundle_against_itself_is_promoted_before_the_last_look():
    rng = np.random.default_rng(1)
    champion = _rows(rng.uniform(0.3, 1.0, 200))
    decision = _run_looks(_policy(), [dict(r) for r in champion], champion)
    assert decision.gate == "passed" and decision.look and decision.look.index < decision.look.of


def test_an_undecided_last_look_is_inconclusive_and_fails():
    rng = np.random.default_rng(2)
    champion = _rows(rng.uniform(0.0, 1.0, 40))
    challenger = _rows([max(0.0, r["token_f1"] - 0.3) for r in champion])  # exactly at the margin
    decision = _run_looks(_policy(looks=(0.5, 1.0)), challenger, champion)
    assert decision.gate == "failed" and decision.look and decision.look.index == 2
    assert any(c.status == "inconclusive" and c.test == "non-inferiority" for c in decision.checks)


def test_an_identical_bundle_undecided_at_the_last_look_says_how_many_examples_would_settle_it():
    """Identical answers on 72 examples cannot clear a 0.05 margin on token F1 (differences in [-1, 1]) at any
    valid level: the last look is inconclusive and names the count at which the same zeros would show it
    non-inferior, which is exactly where the sequence on that many zeros first says so."""
    rows = _rows(np.random.default_rng(5).uniform(0.2, 1.0, 72))
    policy = _policy(metrics={"token_f1": MetricRule(direction="higher", margin=0.05)}, looks=(0.5, 1.0))
    decision = _run_looks(policy, [dict(r) for r in rows], rows)
    check = next(c for c in decision.checks if c.test == "non-inferiority")
    assert decision.gate == "failed" and check.status == "inconclusive"
    needed = check.settling_examples
    assert needed and needed > 72 and f"about {needed} examples in all would show it non-inferior" in check.reason
    level = policy.sequential_level(1)
    at = {
        n: sequential.paired_difference(np.zeros(n), np.zeros(n), width=1.0, margin=0.05, alpha=level).verdict
        for n in (needed - 1, needed)
    }
    assert at == {needed - 1: "undecided", needed: "non-inferior"}


@settings(max_examples=30, deadline=None)
@given(st.floats(0.05, 0.95), st.floats(0.01, 0.3), st.sampled_from([0.05, 0.01]), st.integers(1, 50))
def test_a_constant_samples_settling_count_is_where_its_sequence_first_decides(value, gap, alpha, n):
    """For constant observations the continuation is the observations, so the count is exact: the first count
    at which that many copies exclude m (from below when the value lies above m, from above otherwise)."""
    m = value - gap if value - gap > 0 else value + gap
    side = +1 if value > m else -1
    direct = sequential.rejects(np.full(sequential.SETTLING_CAP, value), m, alpha, side)
    first = int(direct.argmax()) + 1 if direct.any() else None
    assume(first is None or first > n)  # the sample seen so far is undecided
    settling = sequential.settling_examples(np.full(n, value), m, alpha)
    assert settling.examples == first
    assert settling.side == ("undecided" if first is None else "non-inferior" if side > 0 else "worse")


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=5, max_size=80),
    st.floats(0.05, 0.95),
    st.sampled_from([0.05, 0.0125]),
)
def test_an_undecided_samples_settling_count_lies_past_what_was_seen_and_is_reproducible(values, m, alpha):
    """The observed sequence is continued, not restarted, so the count always exceeds the examples seen; the
    resamples are seeded, so the same sample says the same count (a cached gate decision stays true)."""
    x = np.array(values)
    assume(not (sequential.rejects(x, m, alpha, +1)[-1] or sequential.rejects(x, m, alpha, -1)[-1]))
    settling = sequential.settling_examples(x, m, alpha)
    assert settling.examples is None or settling.examples > len(x)
    assert settling.side != "undecided" or settling.examples is None  # no path decided: no count
    assert sequential.settling_examples(x, m, alpha) == settling


def test_a_boundary_at_the_edge_of_the_range_is_never_settled():
    assert sequential.settling_examples(np.full(10, 0.5), 1.0, 0.05) == sequential.Settling(None, "undecided")


def test_too_few_examples_so_far_continues_rather_than_fails():
    rows = _rows(np.full(10, 0.9))
    decision = decide(rows, _policy(), champion_table=rows, look=Look(index=1, of=4, examples=10, total=40))
    assert decision.gate == "continue"
    assert "so far" in next(c.reason for c in decision.checks if c.test == "min_examples")


def test_sequential_false_and_no_look_keep_the_fixed_n_gate():
    rng = np.random.default_rng(4)
    champion = _rows(rng.uniform(0.3, 1.0, 60))
    challenger = _rows(rng.uniform(0.3, 1.0, 60))
    fixed = decide(challenger, _policy(sequential=False), champion_table=champion)
    with_look = decide(
        challenger, _policy(sequential=False), champion_table=champion, look=Look(index=1, of=2, examples=60, total=60)
    )
    assert fixed.model_dump() == with_look.model_dump() and fixed.look is None
    assert load_policy("default").digest == load_policy("default").model_copy(update={"looks": (0.5, 1.0)}).digest


def test_looks_must_end_at_the_whole_set():
    with pytest.raises(ValueError, match="ending at 1.0"):
        _policy(looks=(0.5, 0.9))


def test_the_packaged_sequential_policy_fits_the_default_evaluators_and_looks_at_thirds():
    from evaluators.config import load_evaluator_config

    policy = load_policy("sequential")
    check_against(policy, load_evaluator_config("default").metric_catalog())  # the pipeline runs it
    assert sequential.look_counts(policy, 72) == [24, 49, 72]
    assert sequential.look_counts(load_policy("default"), 72, 1) == [72]  # fixed-n: one look, the whole set


def test_a_look_past_the_last_is_refused_with_the_looks_there_are():
    from champion.errors import ConfigError

    with pytest.raises(ConfigError, match="look 4 is outside policy seq's 3 look") as caught:
        sequential.look_counts(_policy(looks=(0.25, 0.5, 1.0)), 40, 4)
    assert "looks 1 to 3" in caught.value.fix


def _bundle(prompt_name: str):
    from champion.bundle import Bundle
    from prompts import load_prompt

    template = load_prompt(prompt_name)
    return Bundle(
        model_digest="0" * 64,
        prompt=template.ref,
        decoding=template.decoding.model_dump(mode="json"),
        dataset_digest="1" * 64,
    )


def test_a_runs_look_pairs_the_champion_on_the_examples_the_challenger_was_scored_on():
    """What the pipeline's gate step does at a look: the challenger scored on the look's first examples, the
    champion on the whole set; the gate pairs the champion's rows on those examples and says where it stands."""
    from evaluators.decision import run_gate

    rng = np.random.default_rng(11)
    champion = _rows(rng.uniform(0.5, 1.0, 80))
    policy = _policy(looks=(0.25, 0.5, 1.0)).model_dump_json()
    set_ids = [row["id"] for row in champion]

    def gate_at(look: int, challenger: list[dict]):
        return run_gate(
            challenger,
            _bundle("qa-concise"),
            policy,
            "default",
            {},
            champion_rows=champion,
            champion_bundle=_bundle("qa-concise"),
            champion_version="1",
            look=look,
            set_ids=set_ids,
        )

    for look, count in ((1, 20), (2, 40)):
        record, markdown, html = gate_at(look, [dict(row) for row in champion[:count]])  # identical answers
        assert record["mode"] == "paired" and record["n_examples"] == count
        assert record["look"] == {"index": look, "of": 3, "examples": count, "total": 80}
        if record["gate"] == "continue":
            assert (
                record["decision"] == "continue" and record["decided_at"] == f"look {look} of 3, {count} of 80 examples"
            )
        else:
            assert record["decided_at"] == f"decided at look {look} of 3, {count} of 80 examples"
        assert record["decided_at"] in markdown and record["decided_at"] in html
    record, _, _ = gate_at(1, [dict(row, token_f1=0.0) for row in champion[:20]])  # far below floor and margin
    assert (record["gate"], record["decision"]) == ("failed", "rejected")
    assert record["decided_at"] == "decided at look 1 of 3, 20 of 80 examples"


def test_plan_uses_the_closed_form_and_the_pilot_spread():
    rng = np.random.default_rng(5)
    champion = _rows(rng.uniform(0.0, 1.0, 400))
    pilot = [dict(r, token_f1=r["token_f1"]) for r in champion]  # identical answers: no spread at all
    policy = _policy().model_copy(update={"metrics": {"token_f1": MetricRule(direction="higher", margin=0.1)}})
    [row] = plan(policy, champion, examples=200, power=0.8, reps=300)
    sd = float(np.std([r["token_f1"] for r in champion], ddof=1))
    assert row.fixed_n == sequential.fixed_n_required(sd, 0.1, 0.05, 0.8)
    assert row.spread_from.startswith("champion") and 0.0 <= row.sequential_power <= 1.0
    [paired] = plan(policy, champion, examples=200, pilot_rows=pilot, reps=300)
    assert paired.sd_difference == 0.0 and paired.fixed_n == 1 and paired.spread_from.startswith("pilot")


def test_champion_plan_reads_the_workspace_champion_and_prints_the_table(tmp_path):
    run = tmp_path / "reports" / "run-1"
    run.mkdir(parents=True)
    rng = np.random.default_rng(6)
    rows = [
        {"id": f"q{i}", "token_f1": float(v), "semantic_similarity": float(v)} for i, v in enumerate(rng.random(72))
    ]
    (run / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "audit.jsonl").write_text(json.dumps({"event": "alias_moved", "pipeline_run": "run-1"}) + "\n")
    done = champion_cli("plan", "--workspace", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "token_f1" in done.stdout and "fixed-n needs" in done.stdout
    empty = champion_cli("plan", "--workspace", str(tmp_path / "none"))
    assert empty.returncode == 2 and "champion run" in empty.stderr and "Traceback" not in empty.stderr


def test_champion_plan_on_a_table_without_the_policys_metrics_says_so(tmp_path):
    table = tmp_path / "scores.jsonl"
    table.write_text('{"id": "a"}\n{"id": "b"}\n')
    done = champion_cli("plan", "--scores", str(table))
    assert done.returncode == 2 and "fewer than two scores" in done.stderr


@pytest.mark.parametrize(
    "look", [dict(index=5, of=4, examples=10, total=40), dict(index=1, of=4, examples=50, total=40)]
)
def test_a_look_outside_the_set_is_refused(look):
    with pytest.raises(ValueError, match="outside the set"):
        Look(**look)
