"""String metrics in the SQuAD style: normalise (lowercase, no punctuation or articles), then compare."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

from evaluators.base import MetricSpec

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise_answer(text: str) -> str:
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = normalise_answer(prediction).split(), normalise_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


class ExactMatch:
    spec = MetricSpec("exact_match", "higher", 0.0, 1.0)

    def score(self, records: Sequence[dict]) -> list[float]:
        return [float(normalise_answer(r["output"]) == normalise_answer(r["reference"])) for r in records]


class TokenF1:
    spec = MetricSpec("token_f1", "higher", 0.0, 1.0)

    def score(self, records: Sequence[dict]) -> list[float]:
        return [token_f1(r["output"], r["reference"]) for r in records]
