"""Anytime-valid statistics for the sequential gate, and the sample sizes a policy needs.

A confidence sequence covers the true mean at every sample size at once, so the gate may look after every
block of examples and stop as soon as a sequence clears, with its error still at most the level. Each
sequence here is the *hedged capital* betting construction of Waudby-Smith & Ramdas, "Estimating means of
bounded random variables by betting" (JRSS-B 2024): for a value m of the mean of X in [0, 1], the capital

    K_t(m) = prod_{i<=t} (1 + lambda_i (X_i - m))

is a nonnegative martingale when the mean is m, so by Ville's inequality it reaches 1/alpha with
probability at most alpha, ever. The bets lambda_i are *predictable* (they use X_1..X_{i-1} only): the
predictable plug-in lambda_i = sqrt(2 log(1/alpha) / (sigma2_{i-1} i log(1 + i))), truncated at c/m (or
c/(1-m) for the other side) so that the capital stays positive. m is excluded from below (the mean is above
m) once K_t(m) has reached 1/alpha at some t <= now: that is the running intersection, so the bounds only
ever tighten. Each side is a one-sided test at ``alpha``; the pair is a two-sided (1 - 2 alpha) sequence,
the same convention as the fixed-n gate's intervals.

The sequences need a known range: a paired difference of a metric in [lo, hi] lies in [-(hi-lo), hi-lo];
a relative cost margin needs an upper bound of the amount (completion tokens <= max_tokens). Metrics with
no bound are not tested sequentially (the gate then decides them on the whole set, once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import ndtri  # the standard normal's quantile; scipy.stats would add a second to every import

from champion.errors import ConfigError

TRUNCATION = 0.5  # c in lambda <= c/m: half the largest bet that keeps the capital positive (WSR's default)
GRID = 2001  # values of the mean at which the bounds are located (the decision itself is tested exactly)

SequentialVerdict = Literal["non-inferior", "worse", "undecided"]


def predictable_bets(x: np.ndarray, alpha: float) -> np.ndarray:
    """The predictable plug-in bets for observations in [0, 1] (last axis is time), before truncation."""
    t = np.arange(1, x.shape[-1] + 1, dtype=float)
    mean = (0.5 + np.cumsum(x, axis=-1)) / (t + 1.0)  # a prior observation at 1/2, as in WSR
    variance = (0.25 + np.cumsum((x - mean) ** 2, axis=-1)) / (t + 1.0)
    previous = np.concatenate([np.full(x.shape[:-1] + (1,), 0.25), variance[..., :-1]], axis=-1)
    return np.sqrt(2.0 * math.log(1.0 / alpha) / (previous * t * np.log1p(t)))


def _log_capital(x: np.ndarray, m: np.ndarray | float, bets: np.ndarray, side: int) -> np.ndarray:
    """log K_t(m) over time (last axis), betting that the mean is above m (side=+1) or below it (side=-1)."""
    m = np.asarray(m, dtype=float)[..., None] if np.ndim(m) else float(m)
    limit = TRUNCATION / (m if side > 0 else 1.0 - m)
    lam = np.minimum(bets, limit)
    return np.cumsum(np.log1p(side * lam * (x - m)), axis=-1)


def rejects(x: np.ndarray, m: float, alpha: float, side: int, bets: np.ndarray | None = None) -> np.ndarray:
    """Whether the sequence has excluded m by now: True where the mean is shown above m (side=+1) or below it
    (side=-1) at level alpha. Works on one sample (1-d) or many at once (reps x time), at every time. ``bets``:
    predictable_bets(x, alpha), when the caller tests both sides of the same x."""
    if not 0.0 < m < 1.0:  # a value at the range's edge can never be excluded from its own side
        return np.zeros(x.shape, dtype=bool)
    bets = predictable_bets(x, alpha) if bets is None else bets
    reached = _log_capital(x, m, bets, side) >= math.log(1.0 / alpha)
    return np.logical_or.accumulate(reached, axis=-1)


def bounds(x: np.ndarray, alpha: float) -> tuple[float, float]:
    """The running-intersection confidence sequence for the mean of x in [0, 1], after the last observation."""
    grid = np.linspace(0.0, 1.0, GRID)[1:-1]
    bets = predictable_bets(x, alpha)
    threshold = math.log(1.0 / alpha)
    above = (_log_capital(x, grid, bets, +1) >= threshold).any(axis=-1)  # the mean is above these m
    below = (_log_capital(x, grid, bets, -1) >= threshold).any(axis=-1)
    low = float(grid[above].max()) if above.any() else 0.0
    high = float(grid[below].min()) if below.any() else 1.0
    return low, max(low, high)


SETTLING_CAP = 20_000  # examples: past this, "more than 20000" is as useful an answer as any
SETTLING_RESAMPLES = 65  # odd, so the median is one resample's count


@dataclass(frozen=True)
class Settling:
    """About how many examples in all would decide an undecided sequence, and which way most resamples went."""

    examples: int | None  # None: not within SETTLING_CAP (or the boundary sits at the edge of the range)
    side: SequentialVerdict  # "non-inferior" or "worse": the decision most resamples reached; "undecided" if none


@dataclass(frozen=True)
class SequentialEffect:
    """A paired comparison (or a mean against a floor) after the examples seen so far, in the metric's units."""

    estimate: float
    low: float
    high: float
    verdict: SequentialVerdict
    n: int
    level: float
    method: str
    settling: Settling | None = None  # an undecided effect, when asked: see settling_examples()


@dataclass(frozen=True)
class Range:
    """Where the tested quantity lies: [low, high]. The sequences map it onto [0, 1]."""

    low: float
    high: float

    def scale(self, values: np.ndarray) -> np.ndarray:
        return np.clip((values - self.low) / (self.high - self.low), 0.0, 1.0)

    def unscale(self, value: float) -> float:
        return self.low + value * (self.high - self.low)

    def position(self, value: float) -> float:
        """Where ``value`` lies on the [0, 1] scale the sequences see (a boundary such as -margin)."""
        return (value - self.low) / (self.high - self.low)


def mean_against(
    values: np.ndarray, boundary: float, value_range: Range, alpha: float, method: str, settle: bool = False
) -> SequentialEffect:
    """Is the mean of ``values`` above ``boundary`` ("non-inferior"), below it ("worse"), or not yet known?
    ``settle``: for an undecided mean, also about how many examples would decide it (settling_examples)."""
    x = value_range.scale(np.asarray(values, dtype=float))
    m = value_range.position(boundary)
    above, below = rejects(x, m, alpha, +1)[-1], rejects(x, m, alpha, -1)[-1]
    low, high = bounds(x, alpha)
    verdict: SequentialVerdict = "non-inferior" if above else "worse" if below else "undecided"
    return SequentialEffect(
        estimate=float(np.mean(values)),
        low=value_range.unscale(low),
        high=value_range.unscale(high),
        verdict=verdict,
        n=len(values),
        level=alpha,
        method=method,
        settling=settling_examples(x, m, alpha) if settle and verdict == "undecided" else None,
    )


def settling_examples(x: np.ndarray, m: float, alpha: float, seed: int = 0) -> Settling:
    """If the observations (scaled to [0, 1]) kept coming as they did: the sequence seen so far is continued with
    seeded resamples of them, and the median over SETTLING_RESAMPLES continuations of the total count at which it
    first excludes ``m`` (a continuation that never does counts as never). The median is the fixed-n gate's power
    of 1/2 (fixed_n_required): half of such continuations would still be undecided there. Continuing the observed
    sequence, rather than starting afresh, keeps the count above the examples already seen."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    if not 0.0 < m < 1.0 or n >= SETTLING_CAP:
        return Settling(None, "undecided")
    reps = 1 if np.ptp(x) == 0 else SETTLING_RESAMPLES  # a constant sample has one continuation
    draws = np.random.default_rng(seed).choice(x, size=(reps, SETTLING_CAP - n), replace=True)
    paths = np.concatenate([np.broadcast_to(x, (reps, n)), draws], axis=-1)
    bets = predictable_bets(paths, alpha)  # both sides bet the same amounts
    above, below = rejects(paths, m, alpha, +1, bets), rejects(paths, m, alpha, -1, bets)
    decided = above | below
    ever = decided.any(axis=-1)
    at = decided.argmax(axis=-1)  # the first decision's index, on the paths that decide
    first = np.where(ever, at + 1, np.iinfo(np.int64).max)
    median = int(np.sort(first)[reps // 2])
    shown_above = int((ever & above[np.arange(reps), at]).sum())  # which way each path decided first
    side: SequentialVerdict = (
        "undecided" if not ever.any() else "non-inferior" if 2 * shown_above >= int(ever.sum()) else "worse"
    )
    return Settling(median if median <= SETTLING_CAP else None, side)


def paired_difference(
    challenger: np.ndarray, champion: np.ndarray, *, width: float, margin: float, alpha: float, settle: bool = False
) -> SequentialEffect:
    """Mean of the oriented per-example differences (positive = challenger better), each within [-width, width],
    against the non-inferiority boundary -margin."""
    differences = np.asarray(challenger, dtype=float) - np.asarray(champion, dtype=float)
    return mean_against(
        differences, -margin, Range(-width, width), alpha, "betting confidence sequence (paired)", settle
    )


def relative_cost(
    challenger: np.ndarray,
    champion: np.ndarray,
    *,
    upper: float,
    margin_relative: float,
    alpha: float,
    settle: bool = False,
) -> SequentialEffect:
    """A lower-is-better amount in [0, upper] (tokens, seconds): non-inferior when mean(challenger) <=
    (1 + r) mean(champion), i.e. when the mean of (1 + r) champion - challenger is above 0. The reported
    estimate and bounds are of that contrast, in the amount's units."""
    contrast = (1.0 + margin_relative) * np.asarray(champion, dtype=float) - np.asarray(challenger, dtype=float)
    value_range = Range(-upper, (1.0 + margin_relative) * upper)
    return mean_against(contrast, 0.0, value_range, alpha, "betting confidence sequence (relative margin)", settle)


# --- Planning: how many examples a margin needs ------------------------------------------------------------


def fixed_n_required(sd: float, margin: float, alpha: float, power: float, effect: float = 0.0) -> int:
    """Examples a fixed-n paired non-inferiority test needs: n = ((z_{1-alpha} + z_{power}) sd / (effect +
    margin))^2, the normal approximation for a paired mean with known spread (``effect`` is the true
    difference the plan assumes, 0 = as good as the champion). The fixed-n gate's "about N examples would
    settle it" is this formula at power 1/2 with the observed spread."""
    if effect + margin <= 0:
        raise ValueError("a challenger worse than the margin cannot be shown non-inferior at any sample size")
    if sd <= 0:
        return 1
    z = ndtri(1.0 - alpha) + ndtri(power)
    return max(1, math.ceil((z * sd / (effect + margin)) ** 2))


def looks_at(total: int, fractions: tuple[float, ...] = (), every: int | None = None) -> list[int]:
    """The cumulative example counts at which the gate looks: fractions of the set, or every N examples."""
    if every:
        counts = list(range(every, total, every)) + [total]
    else:
        counts = [max(1, math.ceil(total * fraction)) for fraction in fractions]
    return sorted(set(min(total, count) for count in counts))


def look_counts(policy, total: int, look: int = 1) -> list[int]:
    """How many of the set's first examples the challenger is scored on at each look of ``policy`` (a
    fixed-n policy: one look, the whole set); refuses a ``look`` past the last one."""
    counts = looks_at(total, policy.looks, policy.look_size) if policy.sequential else [total]
    if not 1 <= look <= len(counts):
        raise ConfigError(
            f"look {look} is outside policy {policy.name}'s {len(counts)} look(s) on {total} examples.",
            f"run looks 1 to {len(counts)} (champion run runs them in turn, from look 1).",
        )
    return counts


def first_decisions(above: np.ndarray, below: np.ndarray, looks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """For many samples at once (reps x time): whether each passed, and how many examples it used, when the gate
    looks only at ``looks`` and stops at the first look where the sequence has decided (undecided: the whole set)."""
    reps = above.shape[0]
    used = np.full(reps, looks[-1])
    passed = np.zeros(reps, dtype=bool)
    decided = np.zeros(reps, dtype=bool)
    for count in looks:
        now = ~decided & (above[:, count - 1] | below[:, count - 1])
        used[now] = count
        passed[now] = above[now, count - 1]
        decided |= now
    return passed, used


@dataclass(frozen=True)
class SequentialPlan:
    power: float
    expected_examples: float
    looks: list[int]


def simulate_plan(
    sd: float,
    *,
    width: float,
    margin: float,
    alpha: float,
    looks: list[int],
    effect: float = 0.0,
    reps: int = 2000,
    seed: int = 0,
) -> SequentialPlan:
    """Power and expected examples of the sequential test at these looks, for paired differences drawn from a
    normal with this effect and spread, clipped to their range (a seeded Monte-Carlo estimate)."""
    rng = np.random.default_rng(seed)
    total = looks[-1]
    differences = np.clip(rng.normal(effect, sd, size=(reps, total)), -width, width)
    value_range = Range(-width, width)
    x, m = value_range.scale(differences), value_range.position(-margin)
    passed, used = first_decisions(rejects(x, m, alpha, +1), rejects(x, m, alpha, -1), looks)
    return SequentialPlan(power=float(passed.mean()), expected_examples=float(used.mean()), looks=looks)
