"""The LLM judge: strict parsing, order-free scoring, repeated samples, the bias battery, agreement with
people, cost, both backends."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from champion.errors import BackendError, ConfigError
from evaluators.config import Reliability
from evaluators.judge import Judge, Sampling, Verdict, parse_verdict
from evaluators.reliability import FAMILIES, check_reliability, cohen_kappa, kappa_interval
from generation import get_generator
from prompts import load_rubric
from tests.judge_server import BIASES, JudgeServer

POINTWISE, PAIRWISE = load_rubric("correctness"), load_rubric("pairwise-correctness")
REFERENCE_FREE = load_rubric("pairwise-reference-free")


@pytest.mark.parametrize(
    "text, label",
    [
        ("Score: 4\nReason: close enough", "4"),
        ("**Score:** 5", "5"),
        ("score: 2.", "2"),
        ("Score: 7", None),  # out of range
        ("Score: four", None),
        ("The score is 4", None),  # no prefix line
        ("Score: 4 or maybe 5", None),  # not a lone label
        ("", None),
    ],
)
def test_pointwise_parser_is_strict(text, label):
    assert parse_verdict(text, POINTWISE)[0] == label


@pytest.mark.parametrize(
    "text, label",
    [
        ("Winner: A", "A"),
        ("Winner: tie\nReason: same", "tie"),
        ("winner: b", "B"),
        ("Winner: C", None),
        ("A is better", None),
    ],
)
def test_pairwise_parser(text, label):
    assert parse_verdict(text, PAIRWISE)[0] == label


def test_rationale_is_kept():
    assert parse_verdict("Score: 3\nReason: half right", POINTWISE) == ("3", "half right")


def scripted_judge(server, sampling=None, **kwargs):
    return Judge(
        get_generator("openai", "scripted-judge", base_url=server.base_url, **kwargs),
        POINTWISE,
        PAIRWISE,
        sampling=sampling,
        reference_free=REFERENCE_FREE,
    )


def test_a_fair_scripted_judge_passes_every_family_and_agrees_with_people():
    with JudgeServer() as server:
        judge = scripted_judge(server)
        report = check_reliability(judge, Reliability())
        assert report.reliable, report.reasons
        assert [f.family for f in report.families] == list(FAMILIES)
        assert all(f.passed and f.measured and f.score >= 0.8 for f in report.families)
        assert report.agreement.kappa == 1.0 and report.agreement.kappa_low == 1.0 and report.agreement.n == 20
        # Every call of the check is counted: one per order per pair, one per own answer (no repairs needed).
        assert report.cost.calls == len(server.requests) and report.spent == report.cost
        assert report.cost.prompt_tokens == 10 * report.cost.calls  # what the endpoint reported
        scores = judge.score(
            [
                {"question": "Capital of France?", "reference": "Paris", "output": "It is Paris."},
                {"question": "Capital of France?", "reference": "Paris", "output": "Lyon."},
            ]
        )
        assert scores == [1.0, 0.0]
        body = server.requests[0]
        assert {"model", "messages", "temperature", "top_p", "max_tokens", "seed", "n"} <= set(body)


def test_pairwise_runs_both_orders_and_detects_ties():
    with JudgeServer() as server:
        judge = scripted_judge(server)
        record = {"question": "Capital of France?", "reference": "Paris"}
        win, tie = judge.compare([record, record], ["Paris.", "Paris."], ["Lyon.", "Paris!"])
        assert win.winner == "first" and win.consistent and win.forward.label == "A" and win.swapped.label == "B"
        assert tie.winner == "tie"
        assert len(server.requests) == 4


def test_unparseable_reply_is_repaired_within_the_bound():
    with JudgeServer(mode="sloppy") as server:
        verdict = scripted_judge(server).grade(
            [{"question": "Capital of France?", "reference": "Paris", "output": "Paris"}]
        )[0]
        assert verdict.label == "5" and verdict.method == "repaired"
        assert len(server.requests) == 2


def test_without_repairs_an_unparseable_verdict_is_nan():
    with JudgeServer(mode="sloppy") as server:
        judge = scripted_judge(server)
        judge.max_repairs = 0
        record = {"question": "Capital of France?", "reference": "Paris", "output": "Paris"}
        assert judge.grade([record])[0].method == "unparseable"
        assert math.isnan(judge.score([record])[0])


def test_api_key_comes_from_the_environment_and_is_sent_as_bearer(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "s3cr3t-token")
    with JudgeServer(api_key="s3cr3t-token") as server:
        scripted_judge(server, api_key_env="JUDGE_KEY").grade(
            [{"question": "q", "reference": "Paris", "output": "Paris"}]
        )
        assert server.headers[0]["Authorization"] == "Bearer s3cr3t-token"
    monkeypatch.setenv("JUDGE_KEY", "wrong")
    with JudgeServer(api_key="s3cr3t-token") as server:
        with pytest.raises(BackendError, match="refused the request \\(401\\)"):
            scripted_judge(server, api_key_env="JUDGE_KEY").grade(
                [{"question": "q", "reference": "Paris", "output": "Paris"}]
            )


def test_unreachable_endpoint_is_a_clear_error():
    judge = Judge(
        get_generator("openai", "m", base_url="http://127.0.0.1:9/v1", retries=1, timeout_s=2), POINTWISE, PAIRWISE
    )
    with pytest.raises(BackendError, match="failed after 2 attempts"):
        judge.grade([{"question": "q", "reference": "r", "output": "o"}])


@pytest.fixture(scope="module")
def smollm2_report(smollm2):
    judge = Judge(
        get_generator("transformers", smollm2.path, batch_size=16), POINTWISE, PAIRWISE, reference_free=REFERENCE_FREE
    )
    return judge, check_reliability(judge, Reliability())


def test_embedded_smollm2_judge_is_excluded_with_the_failing_families_named(smollm2_report):
    _, report = smollm2_report
    assert not report.reliable and report.order_free
    failing = {f.family for f in report.families if not f.passed}
    assert "self_preference" in failing  # it prefers its own wrong answers to right ones
    for family in failing:  # every failing family is named in the reasons, with its score and threshold
        assert any(reason.startswith(f"{family}: ") for reason in report.reasons)
    assert len(report.reasons) == len(failing) + (not report.agreement.passed)


def test_order_free_scoring_lifts_smollm2_off_its_position_bias(smollm2_report):
    """Judged one order at a time, SmolLM2 says "A" whatever the pair; averaging both orders' label
    log-probabilities cancels that and leaves what it knows."""
    from evaluators.reliability import load_probes

    judge, report = smollm2_report
    rows = load_probes("v1", "calibration")
    verdicts = judge.compare(rows, [r["first"] for r in rows], [r["second"] for r in rows])
    per_order = sum(v.consistent and v.winner == r["expected"] for v, r in zip(verdicts, rows)) / len(rows)
    order_free = sum(v.winner == r["expected"] for v, r in zip(verdicts, rows)) / len(rows)
    assert per_order <= 0.2 and order_free >= 0.8, (per_order, order_free)
    assert report.family("calibration").score == order_free
    assert sum(v.position_preference for v in verdicts) / len(verdicts) > 1.0  # nats in favour of slot A


def test_logprob_choice_is_constrained_to_the_labels(smollm2):
    generator = get_generator("transformers", smollm2.path, batch_size=4)
    conversation = POINTWISE.render(question="Capital of France?", reference="Paris", answer="Paris")
    (scores,) = generator.choice_logprobs([conversation], POINTWISE.labels, POINTWISE.verdict_prefix)
    assert set(scores.logprobs) == set(POINTWISE.labels) and all(v <= 0 for v in scores.logprobs.values())
    assert scores.prompt_tokens > 20  # the rendered rubric, counted for the judge's cost
    verdict = Judge(generator, POINTWISE, PAIRWISE).grade(
        [{"question": "Capital of France?", "reference": "Paris", "output": "Paris"}]
    )[0]
    assert verdict.method == "logprobs" and verdict.label in POINTWISE.labels


def test_a_judge_endpoint_that_refuses_fails_ragas_metrics_instead_of_nan(monkeypatch):
    from champion.errors import EvaluationError
    from evaluators.ragas_metrics import RagasLLMMetric

    monkeypatch.setenv("JUDGE_KEY", "wrong")
    records = [{"question": "Capital of France?", "reference": "Paris", "output": "Paris."}]
    with JudgeServer(api_key="s3cr3t-token") as server:
        metric = RagasLLMMetric(
            "ragas_answer_accuracy",
            get_generator("openai", "scripted", base_url=server.base_url, api_key_env="JUDGE_KEY"),
        )
        with pytest.raises(EvaluationError, match="judge backend failed: .*refused the request \\(401\\)"):
            metric.score(records)
    monkeypatch.setenv("JUDGE_KEY", "s3cr3t-token")
    with JudgeServer(api_key="s3cr3t-token") as server:  # the same metric with the right key scores
        assert RagasLLMMetric(
            "ragas_answer_accuracy",
            get_generator("openai", "scripted", base_url=server.base_url, api_key_env="JUDGE_KEY"),
        ).score(records) == [1.0]


@pytest.mark.parametrize("bias", [b for b in BIASES if b])
def test_each_planted_bias_excludes_the_judge_for_its_family_and_nothing_else(bias):
    family = {"reference": "reference_free"}.get(bias, bias)
    with JudgeServer(bias=bias) as server:
        report = check_reliability(scripted_judge(server), Reliability())
    assert not report.reliable
    assert [f.family for f in report.families if not f.passed] == [family]
    assert len(report.reasons) == 1 and report.reasons[0].startswith(f"{family}: ")


def labelled_verdict(distribution: dict[str, float]) -> Verdict:
    return Verdict(max(distribution, key=distribution.get), "", "logprobs", distribution=distribution)


probabilities = st.lists(st.floats(0.01, 1.0), min_size=3, max_size=3).map(
    lambda w: dict(zip(("A", "B", "tie"), (x / sum(w) for x in w)))
)


@settings(max_examples=200, deadline=None)
@given(forward=probabilities, swapped=probabilities, slot_a_bonus=st.floats(0.0, 5.0))
def test_an_order_free_verdict_cannot_depend_on_the_order(forward, swapped, slot_a_bonus):
    labels = ("A", "B", "tie")
    ab = Judge._order_free(labelled_verdict(forward), labelled_verdict(swapped), False, labels)
    ba = Judge._order_free(labelled_verdict(swapped), labelled_verdict(forward), False, labels)
    assert {"first": "second", "second": "first", "tie": "tie"}[ab.winner] == ba.winner
    assert ab.margin == pytest.approx(-ba.margin, abs=1e-9)

    # A judge that favours slot A by any amount (log p(A) raised in both orders) gets the same margin.
    def favour_a(p):
        weights = {k: v * (math.exp(slot_a_bonus) if k == "A" else 1.0) for k, v in p.items()}
        return {k: v / sum(weights.values()) for k, v in weights.items()}

    biased = Judge._order_free(labelled_verdict(favour_a(forward)), labelled_verdict(favour_a(swapped)), False, labels)
    assert biased.margin == pytest.approx(ab.margin, abs=1e-6)
    assert biased.position_preference == pytest.approx(ab.position_preference + slot_a_bonus, abs=1e-6)


def test_a_pointwise_grade_is_the_expected_value_over_the_labels():
    judge = Judge(None, POINTWISE, PAIRWISE)
    uniform = {label: 0.2 for label in POINTWISE.labels}
    assert judge.value(labelled_verdict(uniform)) == pytest.approx(0.5)
    skewed = {"1": 0.0, "2": 0.0, "3": 0.0, "4": 0.5, "5": 0.5}
    assert judge.value(labelled_verdict(skewed)) == pytest.approx(0.875)  # not 1.0, the arg-max label's value


@pytest.mark.parametrize("min_agreement, winner", [(0.6, "first"), (0.8, "tie")])
def test_repeated_samples_vote_and_a_split_verdict_is_a_tie(min_agreement, winner):
    record = {"question": "What is the capital of France?", "reference": "Paris"}
    with JudgeServer(noisy=True) as server:  # a third of the seeds flip the verdict
        judge = scripted_judge(server, sampling=Sampling(samples=3, temperature=0.7, min_agreement=min_agreement))
        (verdict,) = judge.compare([record], ["Paris."], ["Lyon."])
        seeds = sorted({r["seed"] for r in server.requests})
        temperatures = {r["temperature"] for r in server.requests}
    assert verdict.winner == winner
    assert verdict.forward.samples == ("A", "A", "B") or sorted(verdict.forward.samples) == ["A", "A", "B"]
    assert verdict.forward.agreement == pytest.approx(2 / 3)
    assert seeds == [0, 1, 2] and temperatures == {0.7} and verdict.cost.calls == 6


def test_rerunning_an_unchanged_judge_costs_nothing(tmp_path):
    from champion.cache import ExampleCache
    from evaluators.config import EvaluatorConfig
    from evaluators.evaluate import build_judge, judge_reliability

    with JudgeServer() as server:
        config = EvaluatorConfig(
            name="t",
            version=1,
            metrics=("token_f1",),
            judge={"model": "scripted", "backend": "openai", "base_url": server.base_url},
        )
        first = judge_reliability(config, judge=build_judge(config.judge, cache=ExampleCache(tmp_path)))
        asked = len(server.requests)
        again = judge_reliability(config, judge=build_judge(config.judge, cache=ExampleCache(tmp_path)))
    assert first["spent"]["calls"] == asked > 100
    assert again["spent"] == {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0} and len(server.requests) == asked
    assert again["cost"] == first["cost"] and again["reliable"] and again["families"] == first["families"]


categories = st.sampled_from(["first", "second", "tie"])


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(categories, categories), min_size=2, max_size=40))
def test_kappa_and_its_interval(pairs):
    from sklearn.metrics import cohen_kappa_score

    human, judged = [h for h, _ in pairs], [j for _, j in pairs]
    kappa = cohen_kappa(human, judged)
    low, high = kappa_interval(human, judged)
    if len(set(human) | set(judged)) < 2:
        assert math.isnan(kappa)  # one category only: chance agreement is total, kappa says nothing
        return
    assert kappa == pytest.approx(cohen_kappa_score(human, judged))
    assert kappa <= 1.0 and (kappa == 1.0) == (human == judged)
    assert math.isnan(low) or -1.0 <= low <= high <= 1.0
    assert cohen_kappa(human + human, judged + judged) == pytest.approx(kappa)
    # The bootstrap's vectorised kappa, on the sample itself (the identity resample), is scikit-learn's.
    import numpy as np

    from evaluators.reliability import resampled_kappas

    categories = sorted(set(human) | set(judged))
    codes = [np.array([[categories.index(x) for x in side]]) for side in (human, judged)]
    assert resampled_kappas(*codes, len(categories))[0] == pytest.approx(kappa)


def test_kappa_of_a_textbook_table():
    # 50 items, two raters, yes/no: 20 yes-yes, 15 no-no, 5 yes-no, 10 no-yes: p_o = 0.7, p_e = 0.5, kappa = 0.4.
    human = ["yes"] * 25 + ["no"] * 25
    judged = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(human, judged) == pytest.approx(0.4)
    low, high = kappa_interval(human, judged)
    assert low < 0.4 < high and high - low < 0.6


def test_below_the_minimum_kappa_the_judge_does_not_vote(tmp_path):
    import json

    from champion.jsonl import read_jsonl

    rows = read_jsonl("evaluators/labels/demo.jsonl")
    flipped = [{**r, "human": {"A": "B", "B": "A", "tie": "tie"}[r["human"]]} for r in rows]  # people disagree
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in flipped))
    with JudgeServer() as server:
        report = check_reliability(scripted_judge(server), Reliability(human_labels=str(path)))
    assert not report.reliable and report.agreement.kappa < 0 and not report.agreement.passed
    assert all(f.passed for f in report.families)
    assert report.reasons[-1].startswith("agreement with people: Cohen's kappa")


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"question": "q", "answer_a": "a", "answer_b": "b", "human": None}], "fill in 'human'"),
        ([{"question": "q", "answer_a": "a", "answer_b": "b", "human": "C"}], "write A, B or tie"),
        (
            [
                {"question": "q", "answer_a": "a", "answer_b": "b", "human": "A"},
                {"question": "q", "answer": "a", "human": "5"},
            ],
            "one kind",
        ),
    ],
)
def test_a_bad_labelled_set_is_a_clear_error(tmp_path, rows, message):
    import json

    from evaluators.reliability import load_labels

    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError) as info:
        load_labels(str(path))
    assert message in info.value.fix or message in info.value.problem


def test_judge_config_refuses_samples_without_a_temperature_and_unknown_probe_sets():
    from pydantic import ValidationError

    from evaluators.config import JudgeConfig
    from evaluators.reliability import probe_folder

    with pytest.raises(ValidationError, match="set a temperature"):
        JudgeConfig(model="m", samples=3)
    with pytest.raises(ConfigError, match="no probe set 'v9'"):
        probe_folder("v9")


def test_a_gate_reports_pairs_export_to_a_labelled_set_that_the_check_accepts_once_reviewed(tmp_path):
    import json
    import subprocess
    import sys

    from evaluators.reliability import human_agreement, load_labels
    from evaluators.report import gate_html

    champion = [
        {"id": str(i), "question": q, "reference": ref, "output": good, "semantic_similarity": 0.9}
        for i, (q, ref, good, _) in enumerate(LABELLED)
    ]
    challenger = [
        {"id": str(i), "question": q, "reference": ref, "output": bad, "semantic_similarity": 0.4}
        for i, (q, ref, _, bad) in enumerate(LABELLED)
    ]
    record = {"checks": [], "decision": "rejected", "gate": "failed", "reasons": ["r"], "bundle_id": "b" * 64}
    record |= {"policy": "p@1", "n_examples": len(LABELLED), "mode": "paired", "multiplicity": "holm"}
    record |= {"bundle": {"prompt": {"name": "qa-concise", "version": 1}}, "champion_label": "version 1"}
    report = tmp_path / "gate_report.html"
    report.write_text(gate_html(record, challenger, champion, "semantic_similarity"))
    assert "download them as a labelled set" in report.read_text()
    exported = tmp_path / "mine.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "labels", "export", str(report), "--output", str(exported)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    items = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [i["answer_a"] for i in items] == [good for _, _, good, _ in LABELLED] and all(
        i["human"] is None for i in items
    )
    assert "</script>" in items[-1]["answer_b"]  # survives the round trip through the HTML report
    with pytest.raises(ConfigError, match="needs"):
        load_labels(str(exported))  # not reviewed yet
    exported.write_text("".join(json.dumps(i | {"human": "A"}) + "\n" for i in items))  # the reviewer's verdicts
    with JudgeServer() as server:
        agreement, _ = human_agreement(scripted_judge(server), str(exported), 0.4)
    assert agreement.n == len(LABELLED) and agreement.accuracy == 1.0


LABELLED = [
    ("What is the capital of France?", "Paris", "Paris.", "Lyon."),
    ("What is the capital of Japan?", "Tokyo", "Tokyo.", "Kyoto."),
    ("How many legs does a spider have?", "eight", "Eight.", "Six </script><b>legs</b>."),
]


@pytest.mark.parametrize("bias, passed", [(None, True), ("self_preference", False)])
def test_self_preference_is_measured_for_a_judge_that_knows_every_answer(bias, passed):
    """Its own answers are right, so it is asked for wrong ones in its own words: the family is measured."""
    with JudgeServer(bias=bias, knows_answers=True) as server:
        report = check_reliability(scripted_judge(server), Reliability())
    family = report.family("self_preference")
    assert family.measured and family.n == 10 and family.passed is passed
    assert "10 more written wrong on request" in family.detail


def test_too_few_probes_cannot_earn_a_vote(tmp_path):
    with JudgeServer() as server:
        report = check_reliability(scripted_judge(server), Reliability(min_probes=30))
    assert not report.reliable
    assert all(not f.measured and not f.passed for f in report.families)
    assert any(reason.startswith("tone: not measured: 6 probes") for reason in report.reasons)


def test_the_local_judge_keeps_its_files_under_the_weights_cache_and_removes_them(weights_cache, tmp_path):
    """Every judge build used to leave a judge-weights-* folder in the system temp directory."""
    import gc
    import tempfile
    from pathlib import Path

    from evaluators.config import JudgeConfig
    from evaluators.evaluate import build_judge

    def in_temp():
        return set(Path(tempfile.gettempdir()).glob("judge-weights-*"))

    before = in_temp()
    judge = build_judge(JudgeConfig(model="smollm2"), weights_cache=str(weights_cache))
    [folder] = list((weights_cache / "judges").glob("judge-weights-*"))
    assert (folder / "config.json").exists()
    del judge
    gc.collect()
    assert not folder.exists()
    assert in_temp() == before
