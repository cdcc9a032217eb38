"""What each metric is: direction, range, whether it is pass/fail, and whether an LLM judge produced it.

One table for every metric a score table can hold, so that the policy check, the gate engine and the
reports agree on facts such as "exact_match is 0/1" or "judge_correctness only votes when the judge is
reliable" instead of guessing from a name.
"""

from __future__ import annotations

from typing import Mapping

from evaluators.base import MetricInfo
from evaluators.guards import GUARDS, guard_info

_INF = float("inf")

BUILTIN = {
    "semantic_similarity": MetricInfo(
        "semantic_similarity", "higher", -1.0, 1.0, description="cosine similarity of answer and reference embeddings"
    ),
    "exact_match": MetricInfo(
        "exact_match",
        "higher",
        0.0,
        1.0,
        binary=True,
        description="normalised answer equals the reference (1) or not (0)",
    ),
    "token_f1": MetricInfo("token_f1", "higher", 0.0, 1.0, description="SQuAD token F1 against the reference"),
    "ragas_bleu": MetricInfo("ragas_bleu", "higher", 0.0, 1.0, description="ragas BLEU"),
    "ragas_rouge_l": MetricInfo("ragas_rouge_l", "higher", 0.0, 1.0, description="ragas ROUGE-L"),
    "ragas_chrf": MetricInfo("ragas_chrf", "higher", 0.0, 1.0, description="ragas chrF"),
    "ragas_string_similarity": MetricInfo(
        "ragas_string_similarity", "higher", 0.0, 1.0, description="ragas string similarity"
    ),
    "ragas_answer_accuracy": MetricInfo(
        "ragas_answer_accuracy",
        "higher",
        0.0,
        1.0,
        judged=True,
        description="ragas answer accuracy, graded by the judge model",
    ),
    "ragas_faithfulness": MetricInfo(
        "ragas_faithfulness",
        "higher",
        0.0,
        1.0,
        judged=True,
        description="ragas faithfulness, graded by the judge model",
    ),
}

# Cost and latency: measured on every generation, whatever the evaluator config says.
GENERATION = {
    "completion_tokens": MetricInfo(
        "completion_tokens", "lower", 0.0, _INF, ratio_scale=True, description="tokens in the answer"
    ),
    "prompt_tokens": MetricInfo(
        "prompt_tokens", "lower", 0.0, _INF, ratio_scale=True, description="tokens of the rendered prompt"
    ),
    "latency_s": MetricInfo(
        "latency_s",
        "lower",
        0.0,
        _INF,
        ratio_scale=True,
        description="generation seconds per example (its batch's time shared by its examples)",
    ),
}

JUDGE_COST = MetricInfo(
    "judge_tokens",
    "lower",
    0.0,
    _INF,
    ratio_scale=True,
    description="prompt + completion tokens the judge spent grading the answer",
)


# Pairwise preferences without references (evaluators.judge.preference): 1 better, 0.5 tie or undecided, 0 worse.
SERVED_PREFERENCE = MetricInfo(
    "judge_served_preference",
    "higher",
    0.0,
    1.0,
    judged=True,
    description="the judge's preference for the answer production served over the evaluated bundle's own answer "
    "to the same logged question (1 served better, 0.5 tie, 0 worse; reference-free, both orders)",
)
SHADOW_PREFERENCE = MetricInfo(
    "judge_shadow_preference",
    "higher",
    0.0,
    1.0,
    judged=True,
    description="the judge's preference for the candidate's answer over the live one (1 better, 0.5 tie, 0 worse)",
)
PREFERENCES = {m.name: m for m in (SERVED_PREFERENCE, SHADOW_PREFERENCE)}


def judge_metric(rubric_name: str) -> MetricInfo:
    """The pointwise judge's grade, named after its rubric (``correctness`` → ``judge_correctness``)."""
    name = f"judge_{rubric_name.replace('-', '_')}"
    return MetricInfo(
        name, "higher", 0.0, 1.0, judged=True, description=f"LLM judge grade ({rubric_name} rubric) mapped onto [0, 1]"
    )


def resolve(name: str, configured: Mapping[str, MetricInfo] | None = None) -> MetricInfo | None:
    """What ``name`` is: the evaluator config's entry when it names it (``configured``), else ``info(name)``."""
    return dict(configured or {}).get(name) or info(name)


def info(name: str) -> MetricInfo | None:
    """What ``name`` is, when the evaluator config is not at hand (judge grades follow ``judge_metric``'s naming)."""
    if name == JUDGE_COST.name:
        return JUDGE_COST
    if name in PREFERENCES:
        return PREFERENCES[name]
    if name.startswith("judge_"):
        return judge_metric(name.removeprefix("judge_"))
    if name.startswith("guard_"):
        if name in GUARDS:
            return guard_info(name)
    return BUILTIN.get(name) or GENERATION.get(name)
