"""The evaluator interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, Sequence


@dataclass(frozen=True)
class MetricSpec:
    name: str
    direction: Literal["higher", "lower"]  # which way is better
    low: float
    high: float


@dataclass(frozen=True)
class MetricInfo:
    name: str
    direction: Literal["higher", "lower"]
    low: float
    high: float  # math.inf for unbounded counts and durations
    binary: bool = False  # every score is exactly 0 or 1
    judged: bool = False  # produced by the LLM judge: votes only when the judge passed its reliability check
    ratio_scale: bool = False  # non-negative with a true zero (tokens, seconds): a relative margin means something
    description: str = ""


class Evaluator(Protocol):
    spec: MetricSpec

    def score(self, records: Sequence[dict]) -> list[float]:
        """One score per record (keys: question, reference, output, optional context), in order.

        A record that cannot be scored gets NaN, never a made-up value: NaN fails the gate.
        """
        ...
