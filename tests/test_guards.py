"""Guard metrics: each guard on answers that pass and fail it, and a policy floor that rejects a bundle."""

import pytest
import yaml
from pydantic import ValidationError

from evaluators.config import EvaluatorConfig
from evaluators.evaluate import evaluate_generations
from evaluators.guards import GuardConfig, build_guards

ALL_ON = GuardConfig(
    banned_substrings=("Lyon",),
    required_pattern=r"[.!?]$",
    valid_json=False,
    max_reading_seconds=3,
)


@pytest.mark.parametrize(
    "answer, failing",
    [
        ("The capital of France is Paris.", set()),
        ("I'm sorry, but I cannot help with that.", {"guard_no_refusal"}),
        ("As an AI language model, I do not have opinions.", {"guard_no_refusal"}),
        ("Use the key AKIAIOSFODNN7EXAMPLE to sign in.", {"guard_no_secrets"}),
        ('Set password = "hunter2xyz" in the config.', {"guard_no_secrets"}),
        ("-----BEGIN RSA PRIVATE KEY-----", {"guard_no_secrets", "guard_required_pattern"}),
        ("It is lyon.", {"guard_no_banned_substrings"}),
        ("Paris", {"guard_required_pattern"}),
        (" ".join(["word"] * 20) + ".", {"guard_reading_time"}),  # 20 words at 200 wpm = 6 s > 3 s
    ],
)
def test_each_guard_fails_exactly_what_it_guards_against(answer, failing):
    guards = build_guards(ALL_ON)
    scores = {g.spec.name: g.score([{"output": answer}])[0] for g in guards}
    assert {name for name, value in scores.items() if value == 0.0} == failing
    assert set(scores.values()) <= {0.0, 1.0}


def test_json_guard():
    (guard,) = build_guards(GuardConfig(no_refusal=False, no_secrets=False, valid_json=True))
    assert guard.score([{"output": '{"answer": "Paris"}'}, {"output": "Paris"}]) == [1.0, 0.0]


def test_a_bad_pattern_is_refused_with_the_field_named():
    with pytest.raises(ValidationError, match="required_pattern is not a regular expression"):
        GuardConfig(required_pattern="([")


def test_only_the_guards_switched_on_become_metrics():
    config = EvaluatorConfig(name="g", version=1, metrics=("token_f1",), guards=GuardConfig(no_refusal=False))
    catalog = config.metric_catalog()
    assert "guard_no_secrets" in catalog and "guard_no_refusal" not in catalog
    assert catalog["guard_no_secrets"].binary and catalog["guard_no_secrets"].direction == "higher"


def test_one_leaked_secret_fails_the_default_policy_floor(tmp_path):
    from champion.bundle import Bundle
    from evaluators.config import load_evaluator_config
    from evaluators.decision import run_gate
    from prompts import load_prompt

    config = load_evaluator_config("default").model_copy(update={"judge": None})
    path = tmp_path / "evaluators.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    rows = [{"id": str(i), "question": f"Question {i}?", "reference": "Paris", "output": "Paris."} for i in range(20)]
    rows[7]["output"] = "Paris. My token is ghp_1234567890abcdefghijklmnopqrstuvwxyzAB"
    for row in rows:
        row |= {"completion_tokens": 3, "prompt_tokens": 20, "latency_s": 0.1}
    table = evaluate_generations(rows, config).table
    prompt = load_prompt("qa-concise")
    bundle = Bundle(
        model_digest="a" * 64,
        prompt=prompt.ref,
        decoding=prompt.decoding.model_dump(mode="json"),
        dataset_digest="d" * 64,
    )
    policy = yaml.safe_load(open("evaluators/policies/default.yaml"))
    policy["metrics"].pop("judge_correctness")
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    record, _, _ = run_gate(table, bundle, str(tmp_path / "policy.yaml"), str(path), {})
    secrets = next(c for c in record["checks"] if c["metric"] == "guard_no_secrets")
    assert record["decision"] == "rejected" and not secrets["passed"]
    assert "guard_no_secrets: mean 0.950 < floor 1.000" in secrets["reason"]
