"""Paired statistics behind the gate: pure functions of per-example arrays, seeded and deterministic.

Challenger and champion are scored on the same examples, so every test here is paired: it looks at
per-example differences, which removes the variance of example difficulty that an unpaired
comparison of two means would carry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Interval:
    estimate: float  # mean of challenger - champion (in the metric's "better" direction)
    low: float
    high: float
    confidence: float
    method: str


def paired_bootstrap_ci(challenger: Sequence[float], champion: Sequence[float], *, confidence: float, resamples: int = 10_000, seed: int = 0) -> Interval:
    """Percentile bootstrap CI of the mean paired difference (challenger - champion)."""
    a, b = np.asarray(challenger, dtype=float), np.asarray(champion, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired samples must have the same non-zero length, got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return Interval(math.nan, math.nan, math.nan, confidence, "paired bootstrap (undefined: NaN scores)")
    diff = a - b
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, diff.size, size=(resamples, diff.size))
    means = diff[indices].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(diff.mean()), float(low), float(high), confidence, f"paired bootstrap, {resamples} resamples, seed {seed}")


@dataclass(frozen=True)
class McNemar:
    challenger_only: int  # examples the challenger passes and the champion fails
    champion_only: int
    p_value: float  # two-sided exact test of "both are equally likely to win a discordant pair"
    one_sided_p_worse: float  # small when the challenger loses more discordant pairs than chance allows


def mcnemar_exact(challenger: Sequence[float], champion: Sequence[float]) -> McNemar:
    """Exact McNemar test on pass/fail outcomes (values >= 0.5 count as pass)."""
    a = np.asarray(challenger, dtype=float) >= 0.5
    b = np.asarray(champion, dtype=float) >= 0.5
    gained, lost = int((a & ~b).sum()), int((~a & b).sum())
    n = gained + lost
    if n == 0:
        return McNemar(0, 0, 1.0, 1.0)
    two_sided = scipy_stats.binomtest(gained, n, 0.5, alternative="two-sided").pvalue
    worse = scipy_stats.binomtest(gained, n, 0.5, alternative="less").pvalue
    return McNemar(gained, lost, float(two_sided), float(worse))


def bonferroni_confidence(alpha: float, n_tests: int) -> float:
    """Confidence of each two-sided interval whose lower bound makes a one-sided test at ``alpha / n_tests``,
    so that ``n_tests`` non-inferiority checks together keep the family-wise error at ``alpha``."""
    return 1.0 - 2.0 * alpha / max(n_tests, 1)
