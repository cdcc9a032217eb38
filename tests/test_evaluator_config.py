import math

import pytest

from champion.errors import ConfigError
from evaluators.config import load_evaluator_config
from evaluators.evaluate import evaluate_generations, judge_reliability
from evaluators.gate import GatePolicy, decide
from evaluators.judge import Judge
from evaluators.ragas_metrics import RagasMetric
from generation import get_generator
from prompts import load_rubric
from tests.judge_server import JudgeServer

BASE = "name: t\nversion: 1\nmetrics: [exact_match, token_f1]\n"


def write(tmp_path, body):
    path = tmp_path / "evaluators.yaml"
    path.write_text(body)
    return str(path)


def test_packaged_config_loads_and_has_a_stable_digest():
    config = load_evaluator_config("default")
    assert "semantic_similarity" in config.metrics and config.judge is not None
    assert load_evaluator_config("default").digest == config.digest


@pytest.mark.parametrize(
    "body, message",
    [
        (BASE.replace("token_f1", "token_f2"), "did you mean 'token_f1'"),
        (BASE.replace("token_f1", "exact_match"), "listed twice"),
        (BASE + "judge: {model: smollm2, backend: gpt}\n", "backend"),
        (BASE + "judge: {model: smollm2, reliability: {min_swap_consistency: 1.5}}\n", "min_swap_consistency"),
        (BASE + "judges: {}\n", "judges"),
        (BASE.replace("metrics: [exact_match, token_f1]", "metrics: []"), "metrics"),
        (BASE.replace("token_f1", "ragas_answer_accuracy"), "add a 'judge' section"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_evaluator_config(write(tmp_path, body))


def test_digest_changes_with_any_setting(tmp_path):
    assert (
        load_evaluator_config(write(tmp_path, BASE)).digest
        != load_evaluator_config(write(tmp_path, BASE.replace("version: 1", "version: 2"))).digest
    )


def test_ragas_string_metrics_rank_right_above_wrong():
    records = [
        {"reference": "The capital of France is Paris", "output": "The capital of France is Paris"},
        {"reference": "The capital of France is Paris", "output": "Bananas are yellow"},
    ]
    for name in ("ragas_bleu", "ragas_rouge_l", "ragas_chrf", "ragas_string_similarity"):
        right, wrong = RagasMetric(name).score(records)
        assert right > wrong, name


def test_reliable_judge_votes_and_unreliable_judge_is_excluded(tmp_path):
    rows = [{"id": str(i), "question": "Capital of France?", "reference": "Paris", "output": "Lyon"} for i in range(3)]
    policy = GatePolicy.model_validate(
        {
            "name": "p",
            "version": 1,
            "min_examples": 3,
            "metrics": {
                "exact_match": {"direction": "higher", "floor": 0.0, "margin": 0.05},
                "judge_correctness": {"direction": "higher", "floor": 0.5, "margin": 0.05},
            },
        }
    )
    config = load_evaluator_config(write(tmp_path, BASE))
    with JudgeServer() as server:
        judge = Judge(
            get_generator("openai", "scripted", base_url=server.base_url),
            load_rubric("correctness"),
            load_rubric("pairwise-correctness"),
        )
        evaluation = evaluate_generations(rows, config, judge=judge)
        assert judge_reliability(config, judge=judge)["reliable"] is True
    assert evaluation.aggregates["judge_correctness"] == 0.0 and evaluation.table[0]["judge_correctness_rationale"]
    metrics = config.metric_catalog()
    voting = decide(evaluation.table, policy, metrics=metrics, judge_reliable=True)
    assert not voting.passed and any("judge_correctness: mean 0.000 < floor 0.500" in r for r in voting.reasons)
    excluded = decide(
        evaluation.table,
        policy,
        metrics=metrics,
        judge_reliable=False,
        judge_reasons=["calibration accuracy 0.10 < 0.80"],
    )
    assert excluded.passed and any(
        "judge excluded from voting (calibration accuracy 0.10 < 0.80)" in r for r in excluded.reasons
    )


def test_ragas_answer_accuracy_runs_on_the_judge_backend(tmp_path):
    from evaluators.ragas_metrics import RagasLLMMetric

    records = [
        {"question": "Capital of France?", "reference": "Paris", "output": "The capital is Paris."},
        {"question": "Capital of France?", "reference": "Paris", "output": "Lyon."},
    ]
    with JudgeServer() as server:
        metric = RagasLLMMetric("ragas_answer_accuracy", get_generator("openai", "scripted", base_url=server.base_url))
        assert metric.score(records) == [1.0, 0.0]
        assert any("rating" in m["content"] for body in server.requests for m in body["messages"])


def test_llm_metrics_are_nan_when_they_cannot_be_judged(smollm2):
    from evaluators.ragas_metrics import RagasLLMMetric

    generator = get_generator("transformers", smollm2.path, batch_size=4)
    faithfulness = RagasLLMMetric("ragas_faithfulness", generator)
    assert math.isnan(faithfulness.score([{"question": "q", "reference": "r", "output": "o"}])[0])  # no context column


def test_empty_and_blank_outputs_score_without_crashing(tmp_path):
    config = load_evaluator_config(
        write(
            tmp_path,
            "name: t\nversion: 1\nmetrics: [semantic_similarity, exact_match, token_f1, ragas_bleu, ragas_rouge_l, ragas_chrf, ragas_string_similarity]\n",
        )
    )
    rows = [
        {"id": "a", "question": "q", "reference": "Paris", "output": ""},
        {"id": "b", "question": "q", "reference": "Paris", "output": "Paris"},
    ]
    evaluation = evaluate_generations(rows, config)
    assert evaluation.table[0]["semantic_similarity"] == 0.0 and evaluation.table[1]["token_f1"] == 1.0
    assert all(
        isinstance(v, float)
        for row in evaluation.table
        for k, v in row.items()
        if k not in {"id", "question", "reference", "output", "tags"}
    )


def test_every_packaged_config_loads():
    from evaluators.config import CONFIGS_DIR

    for path in CONFIGS_DIR.glob("*.yaml"):
        assert load_evaluator_config(path.stem).name == path.stem
