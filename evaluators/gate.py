"""The gate: decide from a bundle's per-example scores whether it may be promoted.

``decide`` returns a Decision and never raises for a rejected bundle; it fails closed: a missing
metric, a NaN or infinite value, or too few examples is a failed check with its reason.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from champion.digests import sha256_json
from champion.errors import ConfigError
from evaluators.scores import aggregate

POLICIES_DIR = Path(__file__).resolve().parent / "policies"


class MetricRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    direction: Literal["higher", "lower"]
    floor: float = Field(allow_inf_nan=False)  # the worst acceptable aggregate (a ceiling when direction is lower)


class GatePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int = Field(ge=1)
    min_examples: int = Field(ge=1)
    metrics: dict[str, MetricRule] = Field(min_length=1)

    @property
    def digest(self) -> str:
        return sha256_json(self.model_dump(mode="json"))


def load_policy(ref: str) -> GatePolicy:
    """A packaged policy by name (``default``) or a path to a YAML file."""
    path = Path(ref) if ref.endswith((".yaml", ".yml")) else POLICIES_DIR / f"{ref}.yaml"
    if not path.is_file():
        packaged = sorted(p.stem for p in POLICIES_DIR.glob("*.yaml"))
        raise ConfigError(f"gate config {ref!r} not found.", f"pass a path to a YAML file or one of {packaged}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return GatePolicy.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"gate config {path} is not valid YAML: {exc}", "fix the YAML syntax.") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"gate config {path} is invalid: {problems}.", "fix the fields named; see evaluators/policies/default.yaml.") from exc


class Check(BaseModel):
    metric: str
    value: float | None
    threshold: float
    direction: str
    passed: bool
    reason: str
    excluded: bool = False  # reported but not voting (an unreliable judge)


class Decision(BaseModel):
    passed: bool
    policy: str
    policy_digest: str
    n_examples: int
    checks: list[Check]

    @property
    def reasons(self) -> list[str]:
        failed = [check.reason for check in self.checks if not check.passed]
        excluded = [check.reason for check in self.checks if check.excluded]
        return (failed or ["every check passed"]) + excluded

    @property
    def label(self) -> str:
        return "promoted" if self.passed else "rejected"


JUDGE_PREFIX = "judge_"


def decide(table: Sequence[dict], policy: GatePolicy, *, judge_reliable: bool = False, judge_reasons: Sequence[str] = ()) -> Decision:
    """Judge metrics (``judge_*``) vote only when the judge passed its reliability check."""
    n = len(table)
    checks = [
        Check(
            metric="min_examples",
            value=float(n),
            threshold=float(policy.min_examples),
            direction="higher",
            passed=n >= policy.min_examples,
            reason=f"{n} examples (need at least {policy.min_examples})",
        )
    ]
    for metric, rule in policy.metrics.items():
        if metric.startswith(JUDGE_PREFIX) and not judge_reliable:
            why = "; ".join(judge_reasons) or "its reliability was not checked"
            checks.append(Check(metric=metric, value=None, threshold=rule.floor, direction=rule.direction, passed=True, excluded=True, reason=f"{metric}: judge excluded from voting ({why})"))
            continue
        value = aggregate(table, metric)
        if not any(metric in row for row in table):
            checks.append(Check(metric=metric, value=None, threshold=rule.floor, direction=rule.direction, passed=False, reason=f"{metric}: missing from the score table (evaluation did not produce it)"))
            continue
        if not math.isfinite(value):
            checks.append(Check(metric=metric, value=None, threshold=rule.floor, direction=rule.direction, passed=False, reason=f"{metric}: some scores are NaN or missing, so the mean is undefined"))
            continue
        ok = value >= rule.floor if rule.direction == "higher" else value <= rule.floor
        relation = ("≥" if ok else "<") if rule.direction == "higher" else ("≤" if ok else ">")
        checks.append(Check(metric=metric, value=value, threshold=rule.floor, direction=rule.direction, passed=ok, reason=f"{metric}: {value:.3f} {relation} floor {rule.floor:.3f}"))
    return Decision(passed=all(c.passed for c in checks), policy=f"{policy.name}@{policy.version}", policy_digest=policy.digest, n_examples=n, checks=checks)


def markdown_report(decision: Decision, bundle_id: str, bundle_label: str) -> str:
    verdict = "✅ **PROMOTED**" if decision.passed else "❌ **REJECTED**"
    lines = [
        f"# Gate decision: {verdict}",
        "",
        f"- bundle: `{bundle_id}` ({bundle_label})",
        f"- policy: `{decision.policy}` (digest `{decision.policy_digest[:12]}`)",
        f"- examples: {decision.n_examples}",
        "",
        "| check | value | threshold | result |",
        "|---|---|---|---|",
    ]
    for check in decision.checks:
        value = "—" if check.value is None else f"{check.value:.3f}"
        bound = "≥" if check.direction == "higher" else "≤"
        result = "excluded" if check.excluded else ("pass" if check.passed else "**fail**")
        lines.append(f"| {check.metric} | {value} | {bound} {check.threshold:.3f} | {result} |")
    lines += ["", "## Why", ""] + [f"- {reason}" for reason in decision.reasons]
    return "\n".join(lines) + "\n"
