"""How many examples a policy's margins need, before the run: fixed-n and with the sequential gate's looks.

The spread of the paired differences comes from a pilot (the challenger's and the champion's scores on the same
examples) or, without one, from the champion's own scores and an assumed correlation rho between the two
bundles' scores on an example: sd_diff = sd * sqrt(2 (1 - rho)), which is sd itself at rho = 1/2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.special import ndtr, ndtri  # the normal's cdf and quantile, without importing scipy.stats

from evaluators import catalog, sequential
from evaluators.catalog import MetricInfo
from evaluators.policy import GatePolicy


@dataclass(frozen=True)
class MetricPlan:
    metric: str
    margin: float  # on the difference scale (a relative margin is turned into units of the champion's mean)
    sd_difference: float
    spread_from: str  # "pilot" or "champion, rho=0.5"
    level: float  # one-sided level per comparison (alpha / comparisons)
    fixed_n: int  # examples a fixed-n test needs for the chosen power
    fixed_power: float  # power of the fixed-n test on the planned set
    sequential_power: float | None  # power of the sequential gate at the policy's looks on the planned set
    expected_examples: float | None  # examples the sequential gate is expected to use
    note: str = ""


def _values(rows: Sequence[dict], metric: str, sign: float) -> np.ndarray:
    return np.array([sign * float(row[metric]) for row in rows if isinstance(row.get(metric), (int, float))])


def plan(
    policy: GatePolicy,
    champion_rows: Sequence[dict],
    *,
    examples: int,
    power: float = 0.8,
    pilot_rows: Sequence[dict] | None = None,
    correlation: float = 0.5,
    metrics: Mapping[str, MetricInfo] | None = None,
    upper_bounds: Mapping[str, float] | None = None,
    reps: int = 1000,
) -> list[MetricPlan]:
    """A plan per compared metric of ``policy``, assuming the challenger is as good as the champion (a true
    difference of 0), the hypothesis the gate must be able to confirm."""
    compared = [(name, rule) for name, rule in policy.metrics.items() if rule.compare]
    level = policy.sequential_level(len(compared))
    looks = sequential.looks_at(examples, policy.looks, policy.look_size)
    by_id = {str(row.get("id")): row for row in (pilot_rows or [])}
    plans = []
    for name, rule in compared:
        info = catalog.resolve(name, metrics)
        sign = 1.0 if rule.direction == "higher" else -1.0
        champion = _values(champion_rows, name, sign)
        if champion.size < 2:
            continue
        if rule.margin_relative is not None:
            margin, width_bound = rule.margin_relative * abs(float(champion.mean())), (upper_bounds or {}).get(name)
        else:
            margin, width_bound = rule.margin or 0.0, None
        pairs = [(row, by_id[str(row.get("id"))]) for row in champion_rows if str(row.get("id")) in by_id]
        if len(pairs) >= 2:
            differences = np.array([sign * (float(c[name]) - float(k[name])) for k, c in pairs])
            sd, spread_from = float(differences.std(ddof=1)), f"pilot ({len(pairs)} pairs)"
        else:
            sd = float(champion.std(ddof=1)) * math.sqrt(2.0 * (1.0 - correlation))
            spread_from = f"champion, rho={correlation:g}"
        fixed_n = sequential.fixed_n_required(sd, margin, level, power) if margin > 0 else 0
        z = margin * math.sqrt(examples) / sd - ndtri(1 - level) if sd > 0 else math.inf
        width = (
            1.0
            if rule.kind == "binary"
            else (info.high - info.low)
            if info and math.isfinite(info.high - info.low)
            else width_bound
        )
        if width and margin > 0:
            simulated = sequential.simulate_plan(sd, width=width, margin=margin, alpha=level, looks=looks, reps=reps)
            seq_power, expected, note = simulated.power, simulated.expected_examples, ""
        else:
            seq_power, expected, note = None, None, "no known range: decided on the whole set (fixed-n)"
        plans.append(
            MetricPlan(
                metric=name,
                margin=margin,
                sd_difference=sd,
                spread_from=spread_from,
                level=level,
                fixed_n=fixed_n,
                fixed_power=float(ndtr(z)) if margin > 0 else 0.0,
                sequential_power=seq_power,
                expected_examples=expected,
                note=note,
            )
        )
    return plans
