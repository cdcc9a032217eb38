"""LLM-as-judge: pointwise grades and pairwise comparisons, scored so that the answer order cannot matter.

How a verdict is reached depends on what the backend can give:

- **log-probabilities** (transformers, or any generator with ``choice_logprobs``): a constrained choice
  over the rubric's labels, one forward pass. A pairwise verdict averages the label distributions of
  both orders (mapped to the caller's order), so a preference for the first slot cancels by construction;
  a pointwise grade is the expected value over the label distribution, not the arg-max label.
- **generated text** (endpoints): ``samples`` replies per prompt (at ``temperature``, a distinct seed
  each), parsed strictly; the majority label wins and its share is reported. A pairwise verdict counts
  only when both orders agree; one whose samples agree less than ``min_sample_agreement`` is a tie.

Whether the judge may vote is evaluators/reliability.py's question.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from evaluators.base import MetricSpec
from prompts import JudgeRubric, load_rubric


@dataclass(frozen=True)
class Cost:
    """What judging one item cost the backend (a cached verdict reports what it cost when computed)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def __sub__(self, other: Cost) -> Cost:
        return Cost(
            self.calls - other.calls,
            self.prompt_tokens - other.prompt_tokens,
            self.completion_tokens - other.completion_tokens,
        )

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Verdict:
    label: str | None  # one of the rubric's labels, or None when no reply could be parsed
    rationale: str
    method: str  # "logprobs" | "generated" | "repaired" | "sampled" | "unparseable"
    cost: Cost = Cost()
    distribution: dict[str, float] | None = None  # p(label), normalised over the labels (log-probability path)
    samples: tuple[str | None, ...] = ()  # each sample's label (generated path)

    @property
    def agreement(self) -> float | None:
        """Share of samples that gave the winning label (None with one sample or on the log-probability path)."""
        if len(self.samples) < 2 or self.label is None:
            return None
        return sum(s == self.label for s in self.samples) / len(self.samples)

    @property
    def tokens(self) -> int:
        return self.cost.tokens


@dataclass(frozen=True)
class PairVerdict:
    winner: str | None  # "first" | "second" | "tie" in the caller's order; None when the two orders disagree
    consistent: bool  # the two orders, judged separately, gave the same verdict
    forward: Verdict
    swapped: Verdict
    margin: float | None = None  # order-free: mean over both orders of log p(first) - log p(second)
    position_preference: float | None = None  # order-free: how much the judge favours slot A (cancelled in margin)

    @property
    def cost(self) -> Cost:
        return self.forward.cost + self.swapped.cost


def preference(winner: str | None) -> float:
    """The first answer's score for one pair: 1 better, 0 worse, 0.5 for a tie or a verdict that flips with the
    order (the judge could not tell)."""
    return {"first": 1.0, "second": 0.0}.get(winner or "tie", 0.5)


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


def _log(p: float) -> float:
    return math.log(max(p, 1e-300))  # a label the model all but excludes still has a finite margin


def _normalised(logprobs: dict[str, float]) -> dict[str, float]:
    top = max(logprobs.values())
    weights = {label: math.exp(value - top) for label, value in logprobs.items()}
    total = sum(weights.values())
    return {label: weight / total for label, weight in weights.items()}


@dataclass
class Sampling:
    """Repeated samples for backends without log-probabilities (part of the evaluator config's digest)."""

    samples: int = 1
    temperature: float = 0.0
    min_agreement: float = 0.6


class Judge:
    def __init__(
        self,
        generator,
        pointwise: JudgeRubric,
        pairwise: JudgeRubric,
        *,
        max_repairs: int = 1,
        sampling: Sampling | None = None,
        reference_free: JudgeRubric | None = None,  # default: the packaged pairwise-reference-free rubric
    ) -> None:
        if pointwise.kind != "pointwise" or pairwise.kind != "pairwise":
            raise ValueError("Judge needs a pointwise and a pairwise rubric")
        if reference_free is None:
            reference_free = load_rubric("pairwise-reference-free")
        if reference_free.kind != "pairwise" or "reference" in reference_free.variables:
            raise ValueError("the reference-free rubric must be pairwise and must not read the reference")
        self.generator = generator
        self.pointwise = pointwise
        self.pairwise = pairwise
        self.reference_free = reference_free
        self.max_repairs = max_repairs
        self.sampling = sampling or Sampling()
        self.spec = MetricSpec(f"judge_{pointwise.name.replace('-', '_')}", "higher", 0.0, 1.0)
        self._computed = Cost()  # every call made through this judge (what an uncached generator spent)

    @property
    def uses_logprobs(self) -> bool:
        return hasattr(self.generator, "choice_logprobs")

    # -- asking -------------------------------------------------------------------------------

    def spent(self) -> Cost:
        """What the backend has computed for this judge so far: a cached generator's count of its cache misses
        (whoever called it, ragas' metrics included), else every call made through the judge."""
        counted = getattr(self.generator, "spent", None)
        if counted is None:
            return self._computed
        return Cost(counted["calls"], counted["prompt_tokens"], counted["completion_tokens"])

    def answer(self, questions: Sequence[str], decoding) -> list:
        """The judge model's own answers to plain questions (the self-preference probes), counted like verdicts."""
        answers = self.generator.generate([[{"role": "user", "content": q}] for q in questions], decoding)
        for a in answers:
            self._computed = self._computed + Cost(1, a.prompt_tokens, a.completion_tokens)
        return answers

    def _ask(self, rubric: JudgeRubric, conversations: list[list[dict]]) -> list[Verdict]:
        verdicts = self._choose(rubric, conversations) if self.uses_logprobs else self._sample(rubric, conversations)
        self._computed = sum((v.cost for v in verdicts), self._computed)
        return verdicts

    def _choose(self, rubric: JudgeRubric, conversations: list[list[dict]]) -> list[Verdict]:
        """A constrained choice over the labels from their log-probabilities: one forward pass each."""
        verdicts = []
        for scores in self.generator.choice_logprobs(conversations, rubric.labels, rubric.verdict_prefix):
            distribution = _normalised(scores.logprobs)
            label = max(distribution, key=distribution.__getitem__)
            verdicts.append(
                Verdict(
                    label,
                    f"constrained choice over {list(rubric.labels)}: p({label})={distribution[label]:.2f}",
                    "logprobs",
                    Cost(1, scores.prompt_tokens, 0),
                    distribution,
                )
            )
        return verdicts

    def _sample(self, rubric: JudgeRubric, conversations: list[list[dict]]) -> list[Verdict]:
        """Generated verdicts: one reply each, or ``samples`` seeded replies voted on."""
        n = self.sampling.samples
        if n == 1:
            return self._generate(rubric, conversations, rubric.decoding)
        per_sample = [
            self._generate(
                rubric,
                conversations,
                rubric.decoding.model_copy(
                    update={"temperature": self.sampling.temperature, "seed": rubric.decoding.seed + i}
                ),
            )
            for i in range(n)
        ]
        verdicts = []
        for samples in zip(*per_sample):
            labels = tuple(v.label for v in samples)
            counted = Counter(label for label in labels if label is not None)
            cost = sum((v.cost for v in samples), Cost())
            if not counted:
                verdicts.append(Verdict(None, samples[0].rationale, "unparseable", cost, samples=labels))
                continue
            label, votes = counted.most_common(1)[0]
            rationale = next(v.rationale for v in samples if v.label == label)
            verdicts.append(Verdict(label, f"{votes}/{n} samples: {rationale}", "sampled", cost, samples=labels))
        return verdicts

    def _generate(self, rubric: JudgeRubric, conversations: list[list[dict]], decoding) -> list[Verdict]:
        replies = self.generator.generate(conversations, decoding)
        verdicts = []
        for conversation, reply in zip(conversations, replies):
            label, rationale = parse_verdict(reply.text, rubric)
            method, text = "generated", reply.text
            cost = Cost(1, reply.prompt_tokens, reply.completion_tokens)
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
                repaired = self.generator.generate([repair], decoding)[0]
                text = repaired.text
                cost = cost + Cost(1, repaired.prompt_tokens, repaired.completion_tokens)
                label, rationale = parse_verdict(text, rubric)
                method = "repaired"
            verdicts.append(
                Verdict(label, rationale or text[:200], method if label is not None else "unparseable", cost)
            )
        return verdicts

    # -- pointwise ----------------------------------------------------------------------------

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
        """A grade on [0, 1]: the expected label position under the label distribution (log-probabilities),
        else the mean position of the parsed samples; NaN when nothing could be parsed."""
        labels = self.pointwise.labels
        top = len(labels) - 1
        if verdict.distribution is not None:
            return sum(p * labels.index(label) / top for label, p in verdict.distribution.items())
        parsed = [s for s in verdict.samples if s is not None] or ([verdict.label] if verdict.label else [])
        if not parsed:
            return math.nan
        return sum(labels.index(label) / top for label in parsed) / len(parsed)

    def score(self, records: Sequence[dict]) -> list[float]:
        return [self.value(v) for v in self.grade(records)]

    # -- pairwise -----------------------------------------------------------------------------

    def compare(
        self,
        records: Sequence[dict],
        first: Sequence[str],
        second: Sequence[str],
        *,
        reference_free: bool = False,
    ) -> list[PairVerdict]:
        """Compare two answers per record in both orders. ``reference_free``: with the rubric that does not
        show the reference (the judge must know the answer itself)."""
        rubric = self.reference_free if reference_free else self.pairwise

        def render(a: str, b: str, record: dict) -> list[dict]:
            values = {
                "question": record["question"],
                "reference": record.get("reference", ""),
                "answer_a": a,
                "answer_b": b,
            }
            return rubric.render(**{k: v for k, v in values.items() if k in rubric.variables})

        forward = self._ask(rubric, [render(a, b, r) for r, a, b in zip(records, first, second)])
        swapped = self._ask(rubric, [render(b, a, r) for r, a, b in zip(records, first, second)])
        label_a, label_b, label_tie = rubric.labels  # (A, B, tie)
        as_first = {label_a: "first", label_b: "second", label_tie: "tie"}
        as_swapped = {label_a: "second", label_b: "first", label_tie: "tie"}
        results = []
        for f, s in zip(forward, swapped):
            a = as_first.get(f.label) if f.label else None
            b = as_swapped.get(s.label) if s.label else None
            consistent = a is not None and a == b
            if f.distribution is not None and s.distribution is not None:
                results.append(self._order_free(f, s, consistent, (label_a, label_b, label_tie)))
                continue
            winner = a if consistent else None
            if winner in ("first", "second") and any(
                v.agreement is not None and v.agreement < self.sampling.min_agreement for v in (f, s)
            ):
                winner = "tie"  # the samples disagree too much to call it
            results.append(PairVerdict(winner, consistent, f, s))
        return results

    @staticmethod
    def _order_free(forward: Verdict, swapped: Verdict, consistent: bool, labels: tuple[str, str, str]) -> PairVerdict:
        label_a, label_b, label_tie = labels
        p, q = forward.distribution or {}, swapped.distribution or {}
        # In the caller's order: "first" is A going forward and B when swapped.
        forward_margin = _log(p[label_a]) - _log(p[label_b])
        swapped_margin = _log(q[label_b]) - _log(q[label_a])
        margin = (forward_margin + swapped_margin) / 2
        preference_for_a = (forward_margin - swapped_margin) / 2
        tie = (p[label_tie] + q[label_tie]) / 2
        first, second = (p[label_a] + q[label_b]) / 2, (p[label_b] + q[label_a]) / 2
        if tie >= max(first, second) or margin == 0:
            winner = "tie"
        else:
            winner = "first" if margin > 0 else "second"
        return PairVerdict(winner, consistent, forward, swapped, margin, preference_for_a)
