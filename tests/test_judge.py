"""The LLM judge: strict parsing, position swap, reliability on the calibration set, both backends."""

import math

import pytest

from champion.errors import BackendError
from evaluators.judge import Judge, check_reliability, parse_verdict
from prompts import load_rubric
from serving.generation import get_generator
from tests.judge_server import JudgeServer

POINTWISE, PAIRWISE = load_rubric("correctness"), load_rubric("pairwise-correctness")


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


def scripted_judge(server, **kwargs):
    return Judge(get_generator("openai", "scripted-judge", base_url=server.base_url, **kwargs), POINTWISE, PAIRWISE)


def test_reliable_scripted_judge_passes_reliability_and_grades():
    with JudgeServer() as server:
        judge = scripted_judge(server)
        report = check_reliability(judge, min_swap_consistency=0.8, min_calibration_accuracy=0.8)
        assert report.reliable and report.swap_consistency == 1.0 and report.calibration_accuracy == 1.0
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


def test_embedded_smollm2_judge_fails_its_reliability_check_honestly(smollm2):
    judge = Judge(get_generator("transformers", smollm2.path, batch_size=16), POINTWISE, PAIRWISE)
    report = check_reliability(judge, min_swap_consistency=0.8, min_calibration_accuracy=0.8)
    assert not report.reliable
    assert report.calibration_accuracy < 0.6  # near chance or worse: it cannot tell a right answer from a wrong one
    assert any("calibration accuracy" in reason for reason in report.reasons)


def test_logprob_choice_is_constrained_to_the_labels(smollm2):
    generator = get_generator("transformers", smollm2.path, batch_size=4)
    conversation = POINTWISE.render(question="Capital of France?", reference="Paris", answer="Paris")
    (logprobs,) = generator.choice_logprobs([conversation], POINTWISE.labels, POINTWISE.verdict_prefix)
    assert set(logprobs) == set(POINTWISE.labels) and all(v <= 0 for v in logprobs.values())
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
