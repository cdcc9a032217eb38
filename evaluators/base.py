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


class Evaluator(Protocol):
    spec: MetricSpec

    def score(self, records: Sequence[dict]) -> list[float]:
        """One score per record (keys: question, reference, output, optional context), in order.

        A record that cannot be scored gets NaN, never a made-up value: NaN fails the gate.
        """
        ...
