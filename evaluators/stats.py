"""Statistics behind the gate: pure functions of per-example arrays, seeded and deterministic.

Every comparison here is oriented so that a positive effect means "the challenger is better" and
returns an ``Effect``: the point estimate, a two-sided interval at the requested confidence, and a
one-sided p-value of the null hypothesis "the effect is at or below ``bound``" (``bound = -margin``
for non-inferiority, ``0`` for superiority). The gate decides by the interval's bound; the p-value
only orders the tests for Holm's step-down.

- ``paired_bootstrap``: continuous scores on the same examples. Seeded percentile bootstrap of the mean
  per-example difference (or, with ``relative=True``, of the ratio of means minus one).
- ``tango_paired``: pass/fail scores on the same examples. Tango's (1998) asymptotic score interval for
  the difference of paired proportions, the recommended interval for a paired 2x2 table (Fagerland,
  Lydersen & Laake, 2017, ch. 8). McNemar's exact test stays for superiority questions only.
- ``two_sample_bootstrap``: two independent samples (the monitor, when the evaluation set changed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# scipy.special only (a tenth of a second): scipy.stats and scipy.optimize take a second more to import, and
# every gate, plan and deploy step imports this module; the two functions that need them import them where used.
from scipy.special import ndtr, ndtri


@dataclass(frozen=True)
class Effect:
    estimate: float  # oriented: positive = challenger better (difference of means, or ratio - 1)
    low: float
    high: float
    confidence: float
    p_value: float  # one-sided, H0: effect <= bound
    bound: float
    method: str
    n: int

    @property
    def half_width(self) -> float:
        """How far the interval reaches below the estimate: the smallest margin this sample could clear."""
        return self.estimate - self.low


def _as_arrays(challenger: Sequence[float], champion: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(challenger, dtype=float), np.asarray(champion, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired samples must have the same non-zero length, got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores must be finite; the gate reports NaN, inf and missing scores before testing")
    return a, b


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_bootstrap(
    challenger: Sequence[float],
    champion: Sequence[float],
    *,
    sign: float = 1.0,
    confidence: float,
    bound: float = 0.0,
    relative: bool = False,
    resamples: int = 10_000,
    seed: int = 0,
) -> Effect:
    """Percentile bootstrap of the paired effect. ``sign`` is +1 when higher is better, -1 when lower is.

    ``relative``: the effect is ``sign * (mean(challenger) / mean(champion) - 1)``, e.g. -0.30 for a
    challenger 30% slower when lower is better. The champion's mean must be positive.
    """
    a, b = _as_arrays(challenger, champion)
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, a.size, size=(resamples, a.size))
    if relative:
        if b.mean() <= 0:
            raise ValueError("a relative margin needs a champion mean above zero")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = a[indices].mean(axis=1) / b[indices].mean(axis=1)
        samples = sign * (np.nan_to_num(ratios, nan=1.0, posinf=np.inf) - 1.0)
        estimate = sign * (a.mean() / b.mean() - 1.0)
        method = f"paired bootstrap of the ratio of means, {resamples} resamples, seed {seed}"
    else:
        diff = sign * (a - b)
        samples = diff[indices].mean(axis=1)
        estimate = float(diff.mean())
        method = f"paired bootstrap of the mean difference, {resamples} resamples, seed {seed}"
    low, high = _percentiles(samples, confidence)
    p_value = float(np.mean(samples <= bound))
    return Effect(float(estimate), low, high, confidence, p_value, bound, method, int(a.size))


def two_sample_bootstrap(
    challenger: Sequence[float],
    champion: Sequence[float],
    *,
    sign: float = 1.0,
    confidence: float,
    bound: float = 0.0,
    relative: bool = False,
    resamples: int = 10_000,
    seed: int = 0,
) -> Effect:
    """Unpaired: each sample resampled on its own. For two evaluations on different examples."""
    a, b = np.asarray(challenger, dtype=float), np.asarray(champion, dtype=float)
    if a.size == 0 or b.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("two-sample comparison needs finite, non-empty samples")
    rng = np.random.default_rng(seed)
    means_a = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
    means_b = b[rng.integers(0, b.size, size=(resamples, b.size))].mean(axis=1)
    if relative:
        if b.mean() <= 0:
            raise ValueError("a relative margin needs a champion mean above zero")
        with np.errstate(divide="ignore", invalid="ignore"):
            samples = sign * (np.nan_to_num(means_a / means_b, nan=1.0) - 1.0)
        estimate = sign * (a.mean() / b.mean() - 1.0)
    else:
        samples = sign * (means_a - means_b)
        estimate = sign * (a.mean() - b.mean())
    low, high = _percentiles(samples, confidence)
    method = f"two-sample bootstrap (different examples: unpaired), {resamples} resamples, seed {seed}"
    return Effect(
        float(estimate),
        low,
        high,
        confidence,
        float(np.mean(samples <= bound)),
        bound,
        method,
        int(min(a.size, b.size)),
    )


@dataclass(frozen=True)
class PairedCounts:
    gained: int  # challenger passes, champion fails (n12)
    lost: int  # champion passes, challenger fails (n21)
    n: int

    @classmethod
    def of(cls, challenger: Sequence[float], champion: Sequence[float], sign: float = 1.0) -> "PairedCounts":
        """Counts of discordant pairs. Scores must be exactly 0 or 1; with lower-is-better 0 is the pass."""
        a, b = _as_arrays(challenger, champion)
        if not (np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()):
            raise ValueError("pass/fail scores must be exactly 0 or 1")
        passed_a, passed_b = (a == 1.0, b == 1.0) if sign > 0 else (a == 0.0, b == 0.0)
        return cls(int((passed_a & ~passed_b).sum()), int((~passed_a & passed_b).sum()), int(a.size))


def _tango_statistic(delta: float, counts: PairedCounts) -> float:
    """Tango's score statistic for H0: p(challenger passes) - p(champion passes) = delta."""
    n12, n21, n = counts.gained, counts.lost, counts.n
    a = 2.0 * n
    b = -n12 - n21 + (2.0 * n - n12 + n21) * delta
    c = -n21 * delta * (1.0 - delta)
    p21 = (math.sqrt(max(b * b - 4.0 * a * c, 0.0)) - b) / (2.0 * a)  # constrained MLE of the n21 cell probability
    variance = n * (2.0 * p21 + delta * (1.0 - delta))
    numerator = n12 - n21 - n * delta
    if variance <= 0.0:
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def tango_paired(counts: PairedCounts, *, confidence: float, bound: float = 0.0) -> Effect:
    """Tango's asymptotic score interval for the paired difference of pass rates, and the one-sided
    score test of ``difference <= bound``. Known answer (Cavo et al. 2012, n12=6, n21=16, N=161):
    -0.0621 (95% CI -0.1240 to -0.0054)."""
    from scipy import optimize

    z = ndtri(1.0 - (1.0 - confidence) / 2.0)  # the standard normal's quantile (what scipy.stats.norm.ppf calls)
    estimate = (counts.gained - counts.lost) / counts.n
    eps = 1e-9
    low = (
        -1.0
        if estimate <= -1.0 + eps
        else optimize.brentq(
            lambda d: _tango_statistic(d, counts) - z,
            -1.0 + eps,
            estimate + eps if estimate < 1.0 else 1.0 - eps,
            xtol=1e-10,
        )
    )
    high = (
        1.0
        if estimate >= 1.0 - eps
        else optimize.brentq(
            lambda d: _tango_statistic(d, counts) + z,
            estimate - eps if estimate > -1.0 else -1.0 + eps,
            1.0 - eps,
            xtol=1e-10,
        )
    )
    if -1.0 < bound < 1.0:
        p_value = float(ndtr(-_tango_statistic(bound, counts)))  # the normal's upper tail, as norm.sf computes it
    else:
        p_value = 0.0 if bound <= -1.0 else 1.0
    method = f"Tango score interval for paired pass rates (gained {counts.gained}, lost {counts.lost} of {counts.n})"
    return Effect(float(estimate), float(low), float(high), confidence, p_value, bound, method, counts.n)


@dataclass(frozen=True)
class McNemar:
    challenger_only: int  # examples the challenger passes and the champion fails
    champion_only: int
    p_value: float  # two-sided exact test of "both are equally likely to win a discordant pair"
    one_sided_p_better: float  # small when the challenger wins more discordant pairs than chance allows


def mcnemar_exact(counts: PairedCounts) -> McNemar:
    """Exact (conditional) McNemar test: for superiority of pass/fail metrics only."""
    discordant = counts.gained + counts.lost
    if discordant == 0:
        return McNemar(0, 0, 1.0, 1.0)
    from scipy import stats as scipy_stats

    two_sided = scipy_stats.binomtest(counts.gained, discordant, 0.5, alternative="two-sided").pvalue
    better = scipy_stats.binomtest(counts.gained, discordant, 0.5, alternative="greater").pvalue
    return McNemar(counts.gained, counts.lost, float(two_sided), float(better))


def holm_levels(p_values: Sequence[float], alpha: float) -> list[tuple[float, bool]]:
    """Holm's step-down: for each test (in the given order) its one-sided level and whether the
    step-down reached it. Sorted by p, test k (0-based) is tested at alpha / (m - k); after the first
    test that fails its level, no later test can be claimed."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (p_values[i], i))
    result: list[tuple[float, bool]] = [(alpha, False)] * m
    reached = True
    for rank, index in enumerate(order):
        level = alpha / (m - rank)
        result[index] = (level, reached)
        if p_values[index] > level:
            reached = False
    return result


def settling_size(effect: Effect, margin: float, n: int) -> int | None:
    """About how many examples would make the interval's bound clear ``-margin``, if the estimate and
    the spread stay as observed (the width shrinks with the square root of n). None when the estimate
    itself is at or beyond the margin: more examples would not show non-inferiority."""
    room = effect.estimate + margin
    if room <= 0 or effect.half_width <= 0:
        return None
    return max(n + 1, math.ceil(n * (effect.half_width / room) ** 2))
