"""LLM-as-judge: pointwise grades, pairwise comparisons in both orders, and the judge's own reliability.

A judge must earn its vote. Every run it is checked on a labelled calibration set (a good and a bad
answer to the same question, compared in both orders) and for position-swap consistency; a judge
below the configured thresholds is still reported, but the gate does not count it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from champion.jsonl import read_jsonl
from evaluators.base import MetricSpec
from prompts import JudgeRubric

CALIBRATION_SET = Path(__file__).resolve().parent / "calibration" / "judge_pairs.jsonl"


@dataclass(frozen=True)
class Verdict:
    label: str | None  # one of the rubric's labels, or None when the judge's reply could not be parsed
    rationale: str
    method: str  # "logprobs" | "generated" | "repaired" | "unparseable"
    tokens: int | None = None  # prompt + completion tokens the judge spent on it (generated verdicts, repairs included)


@dataclass(frozen=True)
class PairVerdict:
    winner: (
        str | None
    )  # "first" | "second" | "tie" (as seen from the caller's order), None if inconsistent or unparseable
    consistent: bool
    forward: Verdict
    swapped: Verdict


def parse_verdict(text: str, rubric: JudgeRubric) -> tuple[str | None, str]:
    """Strict: the label must stand alone after the prefix on its own line (``Score: 4``)."""
    label, rationale = None, ""
    prefix = re.escape(rubric.verdict_prefix.rstrip(":").strip())
    allowed = {label.lower(): label for label in rubric.labels}
    for line in text.splitlines():
        match = re.match(rf"^\s*\**{prefix}\**\s*:\s*\**\s*([^\s*.,;]+)\s*\**\s*[.]?\s*$", line, re.IGNORECASE)
        if match and label is None:
            label = allowed.get(match.group(1).lower())
        reason = re.match(r"^\s*reason\s*:\s*(.+)$", line, re.IGNORECASE)
        if reason:
            rationale = reason.group(1).strip()
    return label, rationale


class Judge:
    def __init__(self, generator, pointwise: JudgeRubric, pairwise: JudgeRubric, *, max_repairs: int = 1) -> None:
        if pointwise.kind != "pointwise" or pairwise.kind != "pairwise":
            raise ValueError("Judge needs a pointwise and a pairwise rubric")
        self.generator = generator
        self.pointwise = pointwise
        self.pairwise = pairwise
        self.max_repairs = max_repairs
        self.spec = MetricSpec(f"judge_{pointwise.name.replace('-', '_')}", "higher", 0.0, 1.0)

    def _ask(self, rubric: JudgeRubric, conversations: list[list[dict]]) -> list[Verdict]:
        if hasattr(self.generator, "choice_logprobs"):
            scored = self.generator.choice_logprobs(conversations, rubric.labels, rubric.verdict_prefix)
            verdicts = []
            for logprobs in scored:
                label = max(logprobs, key=logprobs.get)
                total = sum(math.exp(v) for v in logprobs.values())
                verdicts.append(
                    Verdict(
                        label,
                        f"constrained choice over {list(rubric.labels)}: p({label})={math.exp(logprobs[label]) / total:.2f}",
                        "logprobs",
                    )
                )
            return verdicts
        replies = self.generator.generate(conversations, rubric.decoding)
        verdicts = []
        for conversation, reply in zip(conversations, replies):
            label, rationale = parse_verdict(reply.text, rubric)
            method, text = "generated", reply.text
            tokens = reply.prompt_tokens + reply.completion_tokens
            for _ in range(self.max_repairs):
                if label is not None:
                    break
                repair = [
                    *conversation,
                    {"role": "assistant", "content": text},
                    {
                        "role": "user",
                        "content": f"Reply again with exactly this format:\n{rubric.verdict_prefix} <one of {', '.join(rubric.labels)}>\nReason: <one sentence>",
                    },
                ]
                repaired = self.generator.generate([repair], rubric.decoding)[0]
                text, tokens = repaired.text, tokens + repaired.prompt_tokens + repaired.completion_tokens
                label, rationale = parse_verdict(text, rubric)
                method = "repaired"
            verdicts.append(
                Verdict(label, rationale or text[:200], method if label is not None else "unparseable", tokens)
            )
        return verdicts

    def grade(self, records: Sequence[dict]) -> list[Verdict]:
        conversations = [
            self.pointwise.render(
                **{
                    k: v
                    for k, v in {
                        "question": r["question"],
                        "reference": r.get("reference", ""),
                        "answer": r["output"],
                        "context": r.get("context", ""),
                    }.items()
                    if k in self.pointwise.variables
                }
            )
            for r in records
        ]
        return self._ask(self.pointwise, conversations)

    def value(self, verdict: Verdict) -> float:
        """A pointwise grade mapped onto [0, 1] by label position; an unparseable verdict is NaN."""
        if verdict.label is None:
            return math.nan
        return self.pointwise.labels.index(verdict.label) / (len(self.pointwise.labels) - 1)

    def score(self, records: Sequence[dict]) -> list[float]:
        return [self.value(v) for v in self.grade(records)]

    def compare(self, records: Sequence[dict], first: Sequence[str], second: Sequence[str]) -> list[PairVerdict]:
        """Compare two answers per record, in both orders; a verdict counts only if both orders agree."""

        def render(a: str, b: str, record: dict) -> list[dict]:
            values = {
                "question": record["question"],
                "reference": record.get("reference", ""),
                "answer_a": a,
                "answer_b": b,
            }
            return self.pairwise.render(**{k: v for k, v in values.items() if k in self.pairwise.variables})

        forward = self._ask(self.pairwise, [render(a, b, r) for r, a, b in zip(records, first, second)])
        swapped = self._ask(self.pairwise, [render(b, a, r) for r, a, b in zip(records, first, second)])
        labels = self.pairwise.labels  # (A, B, tie)
        as_first = {labels[0]: "first", labels[1]: "second", labels[2]: "tie"}
        as_swapped = {labels[0]: "second", labels[1]: "first", labels[2]: "tie"}
        results = []
        for f, s in zip(forward, swapped):
            a = as_first.get(f.label) if f.label else None
            b = as_swapped.get(s.label) if s.label else None
            consistent = a is not None and a == b
            results.append(PairVerdict(a if consistent else None, consistent, f, s))
        return results


@dataclass
class ReliabilityReport:
    swap_consistency: float
    calibration_accuracy: float
    pointwise_separation: float  # share of calibration pairs where the good answer gets the higher grade
    n_pairs: int
    reliable: bool
    reasons: list[str] = field(default_factory=list)

    def as_metrics(self) -> dict[str, float]:
        return {
            "judge_swap_consistency": self.swap_consistency,
            "judge_calibration_accuracy": self.calibration_accuracy,
            "judge_pointwise_separation": self.pointwise_separation,
            "judge_reliable": float(self.reliable),
        }


def check_reliability(
    judge: Judge,
    *,
    min_swap_consistency: float,
    min_calibration_accuracy: float,
    calibration: Sequence[dict] | None = None,
) -> ReliabilityReport:
    pairs = list(calibration) if calibration is not None else read_jsonl(CALIBRATION_SET)
    compared = judge.compare(pairs, [p["good"] for p in pairs], [p["bad"] for p in pairs])
    consistency = sum(v.consistent for v in compared) / len(pairs)
    accuracy = sum(v.winner == "first" for v in compared) / len(pairs)
    good = judge.score([{**p, "output": p["good"]} for p in pairs])
    bad = judge.score([{**p, "output": p["bad"]} for p in pairs])
    separation = sum(g > b for g, b in zip(good, bad)) / len(pairs)
    reasons = []
    if consistency < min_swap_consistency:
        reasons.append(
            f"position-swap consistency {consistency:.2f} < {min_swap_consistency:.2f}: its verdicts depend on answer order"
        )
    if accuracy < min_calibration_accuracy:
        reasons.append(
            f"calibration accuracy {accuracy:.2f} < {min_calibration_accuracy:.2f} on {len(pairs)} labelled pairs (chance is about 0.33)"
        )
    return ReliabilityReport(
        consistency,
        accuracy,
        separation,
        len(pairs),
        reliable=not reasons,
        reasons=reasons or ["passed both reliability checks"],
    )
