"""A judge that votes, end to end through the real decision path: the evaluator config names an
OpenAI-compatible judge (the scripted judge on 127.0.0.1), evaluate grades every answer through it, the
judge check runs the bias battery and the labelled set, and the one gate engine decides.

The challenger answers more briefly (it wins on cost) but wrongly; only the judge can see that. With a
fair judge the judge votes and the challenger is rejected; the same judge with a planted verbosity bias is
excluded by the battery, and the gate, left with cost alone, approves it: the judge's vote is what
changed the decision.
"""

import json

import pytest
import yaml

from champion.bundle import Bundle
from champion.cache import ExampleCache
from evaluators.config import load_evaluator_config
from evaluators.decision import run_gate
from evaluators.evaluate import build_judge, evaluate_generations, judge_reliability
from tests.judge_server import JudgeServer

QUESTIONS = [
    ("What is the capital of France?", "Paris", "Lyon"),
    ("What is the capital of Japan?", "Tokyo", "Osaka"),
    ("What is the capital of Italy?", "Rome", "Milan"),
    ("What is the capital of Spain?", "Madrid", "Seville"),
    ("What is the capital of Germany?", "Berlin", "Hamburg"),
    ("What is the capital of Canada?", "Ottawa", "Toronto"),
    ("What is the capital of Australia?", "Canberra", "Sydney"),
    ("What is the capital of Egypt?", "Cairo", "Giza"),
    ("What is the capital of Norway?", "Oslo", "Bergen"),
    ("What is the capital of Turkey?", "Ankara", "Izmir"),
    ("What is the capital of Greece?", "Athens", "Sparta"),
    ("What is the capital of Brazil?", "Brasilia", "Recife"),
    ("What is the capital of Kenya?", "Nairobi", "Mombasa"),
    ("What is the capital of Peru?", "Lima", "Cusco"),
    ("What is the capital of Poland?", "Warsaw", "Krakow"),
    ("What is the capital of Sweden?", "Stockholm", "Malmo"),
    ("What is the capital of Chile?", "Santiago", "Valparaiso"),
    ("What is the capital of India?", "Delhi", "Mumbai"),
    ("What is the capital of China?", "Beijing", "Shanghai"),
    ("What is the capital of Russia?", "Moscow", "Kazan"),
    ("What is the capital of Portugal?", "Lisbon", "Porto"),
    ("What is the capital of Austria?", "Vienna", "Graz"),
]
POLICY = {
    "name": "judge-votes",
    "version": 1,
    "min_examples": 20,
    "alpha": 0.05,
    "seed": 0,
    "bootstrap_resamples": 2000,
    "metrics": {
        "judge_correctness": {"direction": "higher", "margin": 0.05},
        "completion_tokens": {"direction": "lower", "margin_relative": 0.25},
    },
}


def rows(answer_index: int, tokens: int) -> list[dict]:
    return [
        {
            "id": str(i),
            "question": q,
            "reference": answers[0],
            "output": f"The capital is {answers[answer_index]}.",
            "completion_tokens": tokens,
            "prompt_tokens": 30,
            "latency_s": 0.1,
        }
        for i, (q, *answers) in enumerate(QUESTIONS)
    ]


def bundle(model: str) -> Bundle:
    from prompts import load_prompt

    prompt = load_prompt("qa-concise")
    return Bundle(
        model_digest=model * 64,
        prompt=prompt.ref,
        decoding=prompt.decoding.model_dump(mode="json"),
        dataset_digest="d" * 64,
    )


@pytest.mark.parametrize("bias, decision", [(None, "rejected"), ("verbosity", "approved")])
def test_a_reliable_judge_votes_and_changes_the_decision(tmp_path, bias, decision):
    with JudgeServer(bias=bias) as server:
        config_path = tmp_path / "evaluators.yaml"
        config_path.write_text(
            yaml.safe_dump(
                {
                    "name": "judged",
                    "version": 1,
                    "metrics": ["token_f1"],
                    "judge": {"model": "scripted", "backend": "openai", "base_url": server.base_url},
                }
            )
        )
        policy_path = tmp_path / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(POLICY))
        config = load_evaluator_config(str(config_path))
        cache = ExampleCache(tmp_path / "cache")
        judge = build_judge(config.judge, cache=cache)
        champion = evaluate_generations(rows(0, tokens=12), config, judge=judge, cache=cache)
        challenger = evaluate_generations(rows(1, tokens=6), config, judge=judge, cache=cache)
        reliability = judge_reliability(config, judge=judge)
        record, markdown, _ = run_gate(
            challenger.table,
            bundle("b"),
            str(policy_path),
            str(config_path),
            reliability,
            champion_rows=champion.table,
            champion_bundle=bundle("a"),
            champion_version="1",
        )
    checks = {c["metric"]: c for c in record["checks"]}
    assert record["decision"] == decision, json.dumps(record["reasons"])
    assert checks["completion_tokens"]["status"] == "pass"  # the challenger is cheaper either way
    assert challenger.aggregates["judge_correctness"] == 0.0 and champion.aggregates["judge_correctness"] == 1.0
    assert challenger.judge_spent["calls"] == len(QUESTIONS)  # one grade per answer, none cached yet
    assert record["judge"]["check_cost"]["calls"] > 0
    if bias is None:
        assert record["judge"]["voted"] and checks["judge_correctness"]["status"] == "fail"
    else:
        assert not record["judge"]["voted"] and record["judge"]["failing_families"] == ["verbosity"]
        assert checks["judge_correctness"]["status"] == "excluded"
        assert "judge excluded from voting (verbosity: 0.50 < 0.80" in checks["judge_correctness"]["reason"]
