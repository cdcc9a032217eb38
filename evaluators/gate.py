"""The gate: may the challenger bundle replace the champion?

``decide`` compares the challenger with the champion on the same examples (paired statistics), or,
when there is no champion yet, applies the bootstrap rule: absolute floors only. It returns a
Decision and never raises for a rejected bundle. It fails closed: a missing metric, a NaN, too few
examples, or a champion scored on other examples is a failed check with its reason.

Per metric, the policy sets a direction, an absolute floor, a non-inferiority margin and whether
superiority is required. Continuous metrics use a seeded paired bootstrap interval of the mean
difference; pass/fail metrics use an exact McNemar test. The intervals are Bonferroni-corrected
across the metrics that vote. Judge metrics vote only if the judge passed its reliability check.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from champion.config import load_versioned_yaml
from champion.digests import sha256_json
from evaluators.scores import aggregate
from evaluators.stats import bonferroni_confidence, mcnemar_exact, paired_bootstrap_ci

POLICIES_DIR = Path(__file__).resolve().parent / "policies"
JUDGE_PREFIX = "judge_"


class MetricRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    direction: Literal["higher", "lower"]
    floor: float | None = Field(None, allow_inf_nan=False)  # the worst acceptable mean (a ceiling when lower is better)
    margin: float = Field(0.0, ge=0.0, allow_inf_nan=False)  # how much worse than the champion is still "not worse"
    require_superiority: bool = False  # the challenger must be better, not just not worse
    kind: Literal["continuous", "binary"] = "continuous"  # binary: pass/fail per example, tested with McNemar


class GatePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int = Field(ge=1)
    min_examples: int = Field(ge=1)
    primary: str | None = None
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    seed: int = 0
    bootstrap_resamples: int = Field(5000, ge=200, le=200_000)
    metrics: dict[str, MetricRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _primary_is_a_metric(self) -> "GatePolicy":
        if self.primary is not None and self.primary not in self.metrics:
            raise ValueError(f"primary metric {self.primary!r} is not one of the policy's metrics {sorted(self.metrics)}")
        return self

    @property
    def digest(self) -> str:
        return sha256_json(self.model_dump(mode="json"))


def load_policy(ref: str) -> GatePolicy:
    """A packaged policy by name (``default``) or a path to a YAML file."""
    return load_versioned_yaml(ref, GatePolicy, POLICIES_DIR, "gate config")


class Check(BaseModel):
    metric: str
    test: str  # "min_examples" | "floor" | "non-inferiority" | "superiority" | "mcnemar" | "pairing"
    passed: bool
    reason: str
    value: float | None = None  # challenger mean
    champion: float | None = None
    difference: float | None = None  # challenger - champion, sign as measured
    ci_low: float | None = None
    ci_high: float | None = None
    threshold: float | None = None  # floor, or -margin / 0 for paired tests
    direction: str = "higher"
    excluded: bool = False  # reported but not voting (an unreliable judge)


class Decision(BaseModel):
    passed: bool
    mode: Literal["paired", "bootstrap"]
    policy: str
    policy_digest: str
    n_examples: int
    checks: list[Check]

    @property
    def reasons(self) -> list[str]:
        failed = [c.reason for c in self.checks if not c.passed]
        excluded = [c.reason for c in self.checks if c.excluded]
        head = failed or ["every check passed" + ("" if self.mode == "paired" else " (no champion yet: bootstrap rule, absolute floors only)")]
        return head + excluded

    @property
    def label(self) -> str:
        return "promoted" if self.passed else "rejected"


def _values(table: Sequence[dict], metric: str) -> list[float]:
    return [float(row[metric]) if isinstance(row.get(metric), (int, float)) else math.nan for row in table]


def _floor_check(metric: str, rule: MetricRule, table: Sequence[dict]) -> Check | None:
    if rule.floor is None:
        return None
    value = aggregate(table, metric)
    if not math.isfinite(value):
        return Check(metric=metric, test="floor", passed=False, threshold=rule.floor, direction=rule.direction, reason=f"{metric}: some scores are NaN or missing, so the mean is undefined")
    ok = value >= rule.floor if rule.direction == "higher" else value <= rule.floor
    relation = ("≥" if ok else "<") if rule.direction == "higher" else ("≤" if ok else ">")
    return Check(metric=metric, test="floor", passed=ok, value=value, threshold=rule.floor, direction=rule.direction, reason=f"{metric}: {value:.3f} {relation} floor {rule.floor:.3f}")


def _paired_check(metric: str, rule: MetricRule, policy: GatePolicy, challenger: list[float], champion: list[float], confidence: float, n_votes: int) -> Check:
    sign = 1.0 if rule.direction == "higher" else -1.0  # measure "better" as positive
    mean_challenger, mean_champion = float(sum(challenger) / len(challenger)), float(sum(champion) / len(champion))
    superiority = rule.require_superiority and metric == policy.primary
    if rule.kind == "binary":
        better = [sign * v for v in challenger] if sign > 0 else [1.0 - v for v in challenger]
        baseline = [sign * v for v in champion] if sign > 0 else [1.0 - v for v in champion]
        test = mcnemar_exact(better, baseline)
        level = policy.alpha / n_votes
        if superiority:
            ok = test.challenger_only > test.champion_only and test.p_value / 2 < level
            why = f"gained {test.challenger_only}, lost {test.champion_only} examples; one-sided p={test.p_value / 2:.4f} (need < {level:.4f} for superiority)"
        else:
            ok = test.one_sided_p_worse >= level
            why = f"gained {test.challenger_only}, lost {test.champion_only} examples; p(worse)={test.one_sided_p_worse:.4f} (significantly worse below {level:.4f})"
        return Check(metric=metric, test="superiority" if superiority else "mcnemar", passed=ok, value=mean_challenger, champion=mean_champion, difference=mean_challenger - mean_champion, direction=rule.direction, reason=f"{metric}: {why}")
    interval = paired_bootstrap_ci([sign * v for v in challenger], [sign * v for v in champion], confidence=confidence, resamples=policy.bootstrap_resamples, seed=policy.seed)
    if not math.isfinite(interval.low):
        return Check(metric=metric, test="non-inferiority", passed=False, value=mean_challenger, champion=mean_champion, direction=rule.direction, reason=f"{metric}: NaN scores, so the paired interval is undefined")
    low, high = interval.low * sign, interval.high * sign
    shown_low, shown_high = min(low, high), max(low, high)
    if superiority:
        ok = interval.low > 0.0
        rule_text = "superiority: the interval must lie above 0" if rule.direction == "higher" else "superiority: the interval must lie below 0"
        threshold = 0.0
    else:
        ok = interval.low > -rule.margin
        rule_text = f"non-inferiority margin {rule.margin:.3f}"
        threshold = -rule.margin * sign
    verdict = "ok" if ok else ("not superior" if superiority else "worse than the champion beyond the margin")
    reason = f"{metric}: challenger {mean_challenger:.3f} vs champion {mean_champion:.3f}, difference {interval.estimate * sign:+.3f} [{shown_low:+.3f}, {shown_high:+.3f}] at {confidence:.1%} ({rule_text}): {verdict}"
    return Check(metric=metric, test="superiority" if superiority else "non-inferiority", passed=ok, value=mean_challenger, champion=mean_champion, difference=interval.estimate * sign, ci_low=shown_low, ci_high=shown_high, threshold=threshold, direction=rule.direction, reason=reason)


def decide(
    table: Sequence[dict],
    policy: GatePolicy,
    *,
    champion_table: Sequence[dict] | None = None,
    judge_reliable: bool = False,
    judge_reasons: Sequence[str] = (),
) -> Decision:
    n = len(table)
    checks = [Check(metric="examples", test="min_examples", passed=n >= policy.min_examples, value=float(n), threshold=float(policy.min_examples), reason=f"{n} examples (need at least {policy.min_examples})")]
    paired_challenger: list[dict] = list(table)
    paired_champion: list[dict] | None = None
    if champion_table is not None:
        by_id = {row.get("id"): row for row in champion_table}
        missing = [row.get("id") for row in table if row.get("id") not in by_id]
        if missing or len(by_id) != len(champion_table):
            checks.append(Check(metric="examples", test="pairing", passed=False, reason=f"the champion was not scored on the same examples ({len(missing)} of {n} missing, e.g. {missing[:3]}): no paired comparison is possible"))
        else:
            paired_champion = [by_id[row.get("id")] for row in table]
    voting = []
    for metric, rule in policy.metrics.items():
        if metric.startswith(JUDGE_PREFIX) and not judge_reliable:
            why = "; ".join(judge_reasons) or "its reliability was not checked"
            checks.append(Check(metric=metric, test="excluded", passed=True, excluded=True, direction=rule.direction, value=aggregate(table, metric) if any(metric in r for r in table) else None, reason=f"{metric}: judge excluded from voting ({why})"))
            continue
        if not any(metric in row for row in table):
            checks.append(Check(metric=metric, test="floor", passed=False, direction=rule.direction, reason=f"{metric}: missing from the score table (evaluation did not produce it)"))
            continue
        voting.append(metric)
        floor = _floor_check(metric, rule, table)
        if floor is not None:
            checks.append(floor)
    if paired_champion is not None:
        confidence = bonferroni_confidence(policy.alpha, len(voting))
        for metric in voting:
            if not any(metric in row for row in paired_champion):
                checks.append(Check(metric=metric, test="non-inferiority", passed=False, reason=f"{metric}: missing from the champion's score table"))
                continue
            checks.append(_paired_check(metric, policy.metrics[metric], policy, _values(paired_challenger, metric), _values(paired_champion, metric), confidence, len(voting)))
    return Decision(
        passed=all(c.passed for c in checks),
        mode="paired" if champion_table is not None else "bootstrap",
        policy=f"{policy.name}@{policy.version}",
        policy_digest=policy.digest,
        n_examples=n,
        checks=checks,
    )


def interval_metrics(checks: Sequence[dict]) -> dict[str, float]:
    """``<metric>_difference`` / ``_ci_low`` / ``_ci_high`` of every paired interval check, for KFP Metrics and MLflow."""
    return {
        f"{c['metric']}_{key}": c[key]
        for c in checks
        if c.get("test") in ("non-inferiority", "superiority")
        for key in ("difference", "ci_low", "ci_high")
        if c.get(key) is not None
    }


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def markdown_report(decision: Decision, bundle_id: str, bundle_label: str, champion_label: str | None = None) -> str:
    verdict = "✅ **PROMOTED**" if decision.passed else "❌ **REJECTED**"
    lines = [
        f"# Gate decision: {verdict}",
        "",
        f"- challenger: `{bundle_id}` ({bundle_label})",
        f"- champion: {champion_label or 'none yet (bootstrap rule: absolute floors only)'}",
        f"- policy: `{decision.policy}` (digest `{decision.policy_digest[:12]}`), {decision.n_examples} examples",
        "",
        "| metric | test | challenger | champion | difference [interval] | threshold | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in decision.checks:
        interval = f"{_fmt(c.difference, True)} [{_fmt(c.ci_low, True)}, {_fmt(c.ci_high, True)}]" if c.ci_low is not None else _fmt(c.difference, True)
        result = "excluded" if c.excluded else ("pass" if c.passed else "**fail**")
        lines.append(f"| {c.metric} | {c.test} | {_fmt(c.value)} | {_fmt(c.champion)} | {interval} | {_fmt(c.threshold)} | {result} |")
    lines += ["", "## Why", ""] + [f"- {reason}" for reason in decision.reasons]
    return "\n".join(lines) + "\n"
