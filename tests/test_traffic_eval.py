"""Production traffic as the scheduled evaluation's data: a request log becomes reference-free examples
(sampled, deduplicated), the judge compares what users were served with the evaluated bundle's own answer,
and the monitor decides served against bundle with the gate engine, paired. Real request logs written by
serving.request_log, the scripted OpenAI-compatible judge, a real sqlite MLflow."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from champion.data import preprocess_data
from champion.errors import ConfigError, DataError
from evaluators.config import EvaluatorConfig, load_evaluator_config
from evaluators.evaluate import build_judge, evaluate_generations, judge_reliability
from registry.monitoring import monitor_champion
from serving.request_log import RequestLog
from tests.judge_server import JudgeServer
from tests.test_shadow import FACTS, LIVE, PROMPT, live_record


def write_log(path, answers: dict[str, str], *, repeat: int = 1, content: bool = True, extra: int = 0):
    """A request log as the prompt transformer writes it: each question asked ``repeat`` times, plus
    ``extra`` failed requests (status 500) and the bundle's identity on every record."""
    log = RequestLog(path, capture_content=content)
    for round_ in range(repeat):
        for number, (question, answer) in enumerate(answers.items()):
            live_record(log, question, answer=answer, request_id=f"r{round_}-{number}")
    for number in range(extra):
        live_record(log, "What is the capital of France?", answer=None, status=500, request_id=f"failed-{number}")
    return str(path)


RIGHT = {question: f"{reference}." for question, reference in FACTS}
WRONG = {question: "I am not sure." for question, _ in FACTS}


def test_a_request_log_becomes_distinct_reference_free_examples_with_what_was_served(tmp_path):
    log = write_log(tmp_path / "requests.jsonl", RIGHT, repeat=3, extra=2)
    result = preprocess_data(log)
    assert result.reference_free and result.train_rows == []  # traffic is evaluated, never trained on
    assert len(result.eval_rows) == len(FACTS) and result.dropped_duplicates == 2 * len(FACTS)
    row = next(r for r in result.eval_rows if r["question"] == FACTS[0][0])
    assert row["reference"] == "" and row["served_answer"] == f"{FACTS[0][1]}." and row["served_bundle"] == LIVE.id
    assert preprocess_data(log).digest == result.digest  # the same log, the same examples


@settings(max_examples=25, deadline=None)
@given(limit=st.integers(1, len(FACTS)), seed=st.integers(0, 2**16))
def test_limit_is_a_seeded_sample_of_distinct_questions(tmp_path_factory, limit, seed):
    log = write_log(tmp_path_factory.mktemp("log") / "requests.jsonl", RIGHT, repeat=2)
    first = preprocess_data(log, limit=limit, seed=seed)
    again = preprocess_data(log, limit=limit, seed=seed)
    questions = [r["question"] for r in first.eval_rows]
    assert len(questions) == limit == len(set(questions))  # a sample, never a duplicate question
    assert first.eval_rows == again.eval_rows  # reproducible
    assert set(questions) <= set(RIGHT)


def test_a_log_without_content_or_with_a_broken_record_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="content capture was off") as info:
        preprocess_data(write_log(tmp_path / "bare.jsonl", RIGHT, content=False))
    assert "--log-content" in info.value.fix
    records = [json.loads(line) for line in (tmp_path / "bare.jsonl").read_text().splitlines()]
    records[1]["status"] = "ok"
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with pytest.raises(DataError, match="does not parse"):
        preprocess_data(str(broken))


@pytest.mark.parametrize(
    "config, message",
    [
        ({"reference_free": True, "metrics": ["token_f1"], "judge": {"model": "j"}}, "cannot list \\['token_f1'\\]"),
        ({"reference_free": True}, "add a 'judge' section"),
        ({}, "at least one metric"),
    ],
)
def test_a_reference_free_config_lists_no_reference_metric_and_needs_a_judge(config, message):
    with pytest.raises(ValueError, match=message):
        EvaluatorConfig(name="x", version=1, **config)


def traffic_config(tmp_path, server) -> EvaluatorConfig:
    data = yaml.safe_load(open("evaluators/configs/traffic.yaml"))
    data["judge"] |= {"model": "scripted", "backend": "openai", "base_url": server.base_url}
    path = tmp_path / "traffic.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_evaluator_config(str(path))


def generated(rows: list[dict], bundle_answers: dict[str, str]) -> list[dict]:
    """What batch_generate hands on: the input columns plus the bundle's own output."""
    return [row | {"output": bundle_answers[row["question"]]} for row in rows]


def test_served_answers_are_judged_against_the_bundles_own_without_references(tmp_path):
    rows = preprocess_data(write_log(tmp_path / "requests.jsonl", WRONG)).eval_rows  # production served nonsense
    with JudgeServer() as server:
        config = traffic_config(tmp_path, server)
        evaluation = evaluate_generations(generated(rows, RIGHT), config)  # the bundle itself answers right
    assert {row["judge_served_preference"] for row in evaluation.table} == {0.0}
    assert evaluation.aggregates["judge_served_preference"] == 0.0
    assert all(row["served_answer"] == "I am not sure." for row in evaluation.table)
    assert evaluation.judge_spent["calls"] == 2 * len(rows)  # both orders, once each


def test_references_are_required_by_a_config_that_scores_against_them(tmp_path):
    rows = preprocess_data(write_log(tmp_path / "requests.jsonl", RIGHT)).eval_rows
    with pytest.raises(ConfigError, match="have no reference") as info:
        evaluate_generations(generated(rows, RIGHT), load_evaluator_config("default"))
    assert "evaluator_config=traffic" in info.value.fix
    referenced = [{"id": "1", "question": "q", "reference": "a", "output": "a"}]
    with JudgeServer() as server:
        with pytest.raises(DataError, match="carry no served answer"):
            evaluate_generations(referenced, traffic_config(tmp_path, server))


@pytest.mark.parametrize(
    "served, healthy",
    [(RIGHT, True), (WRONG, False)],
    ids=["served-as-evaluated", "serving-stack-degraded"],
)
def test_the_monitor_decides_served_against_the_evaluated_bundle_paired(tmp_path, served, healthy):
    rows = preprocess_data(write_log(tmp_path / "requests.jsonl", served)).eval_rows
    with JudgeServer() as server:
        config = traffic_config(tmp_path, server)
        judge = build_judge(config.judge)
        reliability = judge_reliability(config, judge=judge)
        evaluation = evaluate_generations(generated(rows, RIGHT), config, judge=judge)
    config_path = tmp_path / "traffic.yaml"
    result = monitor_champion(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        registered_model_name="qa",
        champion_version="3",
        bundle_id=LIVE.id,
        rows=evaluation.table,
        metrics=evaluation.aggregates,
        drift={},
        policy_ref="traffic",
        evaluator_config_ref=str(config_path),
        judge_reliability=reliability,
    )
    assert reliability["reliable"], reliability["reasons"]
    assert result.healthy is healthy, result.reasons
    check = next(c for c in result.checks if c["metric"] == "judge_served_preference")
    assert check["test"] == "non-inferiority" and result.mode == "paired"
    assert "evaluated bundle's own answers" in result.compared_with
    if not healthy:
        assert check["ci_low"] < -0.1 and check["status"] == "fail"
        assert "judge_served_preference" in " ".join(result.reasons)


def test_without_a_reliable_judge_nothing_votes_and_the_monitor_alerts(tmp_path):
    rows = preprocess_data(write_log(tmp_path / "requests.jsonl", RIGHT)).eval_rows
    with JudgeServer(bias="reference") as server:  # cannot judge without a reference: fails that family
        config = traffic_config(tmp_path, server)
        judge = build_judge(config.judge)
        reliability = judge_reliability(config, judge=judge)
        evaluation = evaluate_generations(generated(rows, RIGHT), config, judge=judge)
    result = monitor_champion(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        registered_model_name="qa",
        champion_version="3",
        bundle_id=LIVE.id,
        rows=evaluation.table,
        metrics={},
        drift={},
        policy_ref="traffic",
        evaluator_config_ref=str(tmp_path / "traffic.yaml"),
        judge_reliability=reliability,
    )
    assert not reliability["reliable"] and not result.healthy
    assert "requires this metric's vote" in " ".join(result.reasons)


def test_the_packaged_traffic_config_and_policy_fit_together():
    from evaluators.policy import check_against, load_policy

    config = load_evaluator_config("traffic")
    check_against(load_policy("traffic"), config.metric_catalog(), "traffic")
    assert config.reference_free and "judge_served_preference" in config.metric_catalog()
    assert PROMPT.name == "qa-concise"
