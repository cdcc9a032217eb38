"""Gate policies: which metrics vote, with which floor and margin, over the whole set and per slice.

A policy is checked twice before any model loads: on its own when it is parsed (types, ranges, unknown
or duplicate keys, margins that make sense for the metric's kind), and against the evaluator config
that will produce the scores (``check_against``: every metric exists, directions and kinds agree with
what the metric is, something can always vote). ``champion policy check`` prints both.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, field_validator, model_validator

from champion.config import load_versioned_yaml
from champion.digests import sha256_json
from champion.errors import ConfigError, Problem
from evaluators.catalog import MetricInfo

POLICIES_DIR = Path(__file__).resolve().parent / "policies"


class MetricRule(BaseModel):
    """How one metric votes. ``direction`` says which way is better; a ``floor`` is the worst acceptable
    mean (a ceiling when lower is better); against a champion the challenger must be non-inferior:
    the interval's bound must clear ``-margin`` (absolute) or ``-margin_relative`` x the champion's
    mean (relative), or clear 0 when ``require_superiority``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    direction: Literal["higher", "lower"] = Field(description="which way is better; must match the metric")
    kind: Literal["continuous", "binary"] = Field(
        "continuous",
        description="binary: exactly 0/1 per example, compared with Tango's paired score interval; "
        "continuous: a paired bootstrap of the differences",
    )
    floor: float | None = Field(
        None, allow_inf_nan=False, strict=True, description="the worst acceptable mean (a ceiling when lower is better)"
    )
    margin: float | None = Field(
        None,
        ge=0.0,
        allow_inf_nan=False,
        strict=True,
        description="non-inferiority margin in the metric's units: the interval's bound must clear -margin",
    )
    margin_relative: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        allow_inf_nan=False,
        strict=True,
        description="margin as a share of the champion's mean (non-negative amounts: tokens, seconds)",
    )
    require_superiority: bool = Field(False, description="the bound must clear 0: the challenger must be better")
    compare: bool = Field(True, description="false: the metric only has a floor and is never compared")
    required: bool = Field(
        False,
        description="the decision cannot be made without this metric's vote: an unreliable judge fails it "
        "instead of excluding it",
    )

    @model_validator(mode="after")
    def _one_margin_that_fits_the_kind(self) -> "MetricRule":
        if self.margin is not None and self.margin_relative is not None:
            raise ValueError(
                "give either margin (absolute) or margin_relative (a share of the champion's mean), not both"
            )
        if self.kind == "binary" and self.margin_relative is not None:
            raise ValueError(
                "a pass/fail metric takes an absolute margin in pass-rate points (margin: 0.05 = 5 points), not margin_relative"
            )
        if self.kind == "binary" and self.margin is not None and self.margin >= 1.0:
            raise ValueError(
                f"a pass/fail metric's margin is a difference of pass rates and must be below 1, got {self.margin}"
            )
        if self.compare and not self.require_superiority and self.margin is None and self.margin_relative is None:
            raise ValueError(
                "say how much worse than the champion is still acceptable: margin (absolute) or margin_relative; "
                "or require_superiority: true; or compare: false to use only the floor"
            )
        if not self.compare and (
            self.margin is not None or self.margin_relative is not None or self.require_superiority
        ):
            raise ValueError(
                "compare: false means the metric is never compared with the champion; remove margin/margin_relative/require_superiority"
            )
        if not self.compare and self.floor is None:
            raise ValueError("compare: false with no floor: the metric would never vote; give it a floor or remove it")
        return self

    @property
    def margin_text(self) -> str:
        if self.require_superiority:
            return "superiority"
        if self.margin_relative is not None:
            return f"margin {self.margin_relative:.0%} of the champion"
        return f"margin {self.margin:.3f}"


class SliceRule(BaseModel):
    """A tagged subset of the examples, checked on its own by the same engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_examples: int = Field(ge=1, strict=True, description="fewer tagged examples than this fails the slice's check")
    metrics: tuple[str, ...] | None = Field(
        None, description="the metrics compared on this slice (default: every compared metric of the policy)"
    )
    margin: float | None = Field(
        None,
        ge=0.0,
        allow_inf_nan=False,
        strict=True,
        description="overrides each metric's absolute margin in this slice",
    )
    margin_relative: float | None = Field(
        None, gt=0.0, lt=1.0, allow_inf_nan=False, strict=True, description="overrides each metric's margin, relatively"
    )
    floors: dict[str, StrictFloat] = Field({}, description="per-metric floors on this slice's mean")

    @model_validator(mode="after")
    def _one_margin(self) -> "SliceRule":
        if self.margin is not None and self.margin_relative is not None:
            raise ValueError("give either margin or margin_relative for a slice, not both")
        return self


class GatePolicy(BaseModel):
    """A versioned gate policy: how many examples, at what error rate, and how each metric votes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the policy's name, recorded with every decision as name@version")
    version: int = Field(ge=1, description="bump it on every change: decisions record which version decided")
    min_examples: int = Field(ge=1, strict=True, description="fewer examples than this fails the gate")
    primary: str | None = Field(None, description="the metric the reports lead with")
    alpha: float = Field(
        0.05, gt=0.0, lt=0.5, strict=True, description="family-wise one-sided error rate of the non-inferiority claims"
    )
    multiplicity: Literal["holm", "bonferroni", "none"] = Field(
        "holm", description="correction across the comparisons of all metrics and slices"
    )
    seed: int = Field(0, description="seed of the bootstrap resamples: the same scores give the same intervals")
    bootstrap_resamples: int = Field(5000, ge=200, le=200_000, description="resamples per bootstrap interval")
    metrics: dict[str, MetricRule] = Field(min_length=1, description="how each metric votes, by metric name")
    slices: dict[str, SliceRule] = Field({}, description="tagged subsets checked on their own, by tag")
    sequential: bool = Field(
        False,
        description="decide at looks with anytime-valid confidence sequences: stop as soon as the evidence "
        "decides, with the error still at most alpha (docs: the gate's statistics)",
    )
    looks: tuple[float, ...] = Field(
        (0.25, 0.5, 0.75, 1.0), description="sequential: the shares of the set after which the gate looks"
    )
    look_size: int | None = Field(
        None, ge=1, description="sequential: look after every N examples instead of at the shares in looks"
    )

    @field_validator("looks")
    @classmethod
    def _looks_end_at_the_whole_set(cls, looks: tuple[float, ...]) -> tuple[float, ...]:
        if not looks or list(looks) != sorted(set(looks)) or looks[0] <= 0 or looks[-1] != 1.0:
            raise ValueError(
                "looks must be increasing shares of the set in (0, 1], ending at 1.0, e.g. [0.25, 0.5, 1.0]"
            )
        return looks

    @model_validator(mode="after")
    def _names_refer_to_metrics(self) -> "GatePolicy":
        if self.primary is not None and self.primary not in self.metrics:
            raise ValueError(
                f"primary metric {self.primary!r} is not one of the policy's metrics {sorted(self.metrics)}{_did_you_mean(self.primary, self.metrics)}"
            )
        for tag, rule in self.slices.items():
            for name in (*(rule.metrics or ()), *rule.floors):
                if name not in self.metrics:
                    raise ValueError(
                        f"slice {tag!r} names metric {name!r}, which the policy does not have{_did_you_mean(name, self.metrics)}"
                    )
            for name in rule.metrics or ():
                metric = self.metrics[name]
                if not metric.compare:
                    raise ValueError(f"slice {tag!r} compares {name!r}, which has compare: false")
            if (
                rule.margin is not None
                and rule.margin >= 1.0
                and any(self.metrics[m].kind == "binary" for m in self.slice_metrics(tag))
            ):
                raise ValueError(f"slice {tag!r}: a margin for pass/fail metrics must be below 1")
        return self

    def slice_metrics(self, tag: str) -> tuple[str, ...]:
        rule = self.slices[tag]
        return (
            rule.metrics
            if rule.metrics is not None
            else tuple(name for name, metric in self.metrics.items() if metric.compare)
        )

    def sequential_level(self, comparisons: int) -> float:
        """Each confidence sequence's one-sided level: Bonferroni over the comparisons (valid at every look);
        ``multiplicity: none`` tests each at alpha (the promotion is still an intersection-union test)."""
        return self.alpha / max(1, comparisons) if self.multiplicity != "none" else self.alpha

    @property
    def digest(self) -> str:
        shape = self.model_dump(mode="json")
        if not self.sequential:  # a fixed-n policy keeps the digest it had before looks existed
            for key in ("sequential", "looks", "look_size"):
                shape.pop(key)
        return sha256_json(shape)


def _did_you_mean(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_policy(ref: str) -> GatePolicy:
    """Load and validate a gate policy.

    Args:
        ref: A packaged policy's name (``default``, ``sliced``, ``traffic``) or a YAML file's path.

    Raises:
        ConfigError: The file is missing, is not YAML, or breaks the schema; the message names the field.
    """
    return load_versioned_yaml(ref, GatePolicy, POLICIES_DIR, "gate config")


PolicyProblem = Problem  # where = the policy field, e.g. metrics.token_f1


def policy_problems(policy: GatePolicy, available: dict[str, MetricInfo]) -> list[PolicyProblem]:
    """Everything wrong with ``policy`` given the metrics an evaluator config produces (``available``)."""
    problems = []
    for name, rule in policy.metrics.items():
        where = f"metrics.{name}"
        metric = available.get(name)
        if metric is None:
            problems.append(
                PolicyProblem(
                    where,
                    f"the evaluator config produces no metric {name!r}{_did_you_mean(name, available)}.",
                    f"use one of {sorted(available)}, or add the evaluator to the evaluator config.",
                )
            )
            continue
        if rule.direction != metric.direction:
            problems.append(
                PolicyProblem(
                    where,
                    f"direction {rule.direction!r}, but {metric.description or name} is better when {metric.direction}.",
                    f"set direction: {metric.direction}.",
                )
            )
        if rule.kind == "binary" and not metric.binary:
            problems.append(
                PolicyProblem(
                    where,
                    f"kind: binary, but {name} is not a 0/1 score (it ranges over [{metric.low:g}, {metric.high:g}]).",
                    "remove kind: binary (it is continuous).",
                )
            )
        if rule.margin_relative is not None and not metric.ratio_scale:
            problems.append(
                PolicyProblem(
                    where,
                    f"margin_relative on {name}, whose scores are not a non-negative amount (tokens, seconds): a share of its mean means nothing.",
                    "use an absolute margin.",
                )
            )
        span = metric.high - metric.low
        if rule.margin is not None and span < float("inf") and rule.margin >= span:
            problems.append(
                PolicyProblem(
                    where,
                    f"margin {rule.margin} is as large as the metric's whole range [{metric.low:g}, {metric.high:g}]: every challenger would pass.",
                    "use a margin well inside the range, e.g. 0.05.",
                )
            )
        if rule.floor is not None and not metric.low <= rule.floor <= metric.high:
            problems.append(
                PolicyProblem(
                    where,
                    f"floor {rule.floor} lies outside the metric's range [{metric.low:g}, {metric.high:g}].",
                    "set a floor inside the range.",
                )
            )
        if rule.require_superiority and metric.judged:
            problems.append(
                PolicyProblem(
                    where,
                    f"require_superiority on {name}, which is excluded whenever the judge fails its reliability check: the requirement would silently disappear.",
                    "require superiority of a metric that always votes.",
                )
            )
    voting = [name for name in policy.metrics if name in available and not available[name].judged]
    if policy.metrics and not voting and all(name in available for name in policy.metrics):
        problems.append(
            PolicyProblem(
                "metrics",
                "every metric comes from the LLM judge, which is excluded when it fails its reliability check: then nothing would vote.",
                "add a metric that does not depend on the judge (e.g. semantic_similarity with a floor and a margin).",
            )
        )
    return problems


LARGE_MARGIN_SHARE = 0.25  # a margin beyond this share of the metric's range lets clearly worse bundles through


def policy_warnings(policy: GatePolicy, available: dict[str, MetricInfo] | None = None) -> list[str]:
    """What is legal but probably not meant: no floor anywhere, margins so wide they hardly test anything."""
    warnings = []
    for name, rule in policy.metrics.items():
        metric = (available or {}).get(name)
        width = metric.high - metric.low if metric is not None else float("inf")
        if (
            metric is not None
            and rule.margin is not None
            and width != float("inf")
            and rule.margin > LARGE_MARGIN_SHARE * width
        ):
            warnings.append(
                f"metrics.{name}: a margin of {rule.margin:g} is {rule.margin / width:.0%} of the metric's range "
                f"[{metric.low:g}, {metric.high:g}]: a challenger that much worse still passes (the packaged evasive "
                "prompt does, at 0.6 on a similarity)."
            )
        if rule.margin_relative is not None and rule.margin_relative >= 0.5:
            warnings.append(
                f"metrics.{name}: margin_relative {rule.margin_relative:g} accepts a challenger {rule.margin_relative:.0%} "
                "worse than the champion."
            )
    if not any(rule.floor is not None for rule in policy.metrics.values()):
        warnings.append(
            "no metric has a floor: without a champion (the first run) nothing votes, so no bundle can be promoted until one is seeded."
        )
    return warnings


def check_against(policy: GatePolicy, available: dict[str, MetricInfo], policy_ref: str = "") -> None:
    """Raise one ConfigError listing every problem (before any model loads)."""
    problems = policy_problems(policy, available)
    if policy_ref.lstrip().startswith("{"):  # a policy pinned as JSON: name it, not its content
        policy_ref = f"{policy.name}@{policy.version}"
    if problems:
        raise ConfigError(
            f"gate policy {policy_ref or policy.name} does not fit the evaluator config: "
            + "; ".join(f"{p.where}: {p.problem}" for p in problems),
            "; ".join(dict.fromkeys(p.fix for p in problems))
            + f" (`champion policy check {policy_ref or 'POLICY'} --evaluators CONFIG` lists them)",
        )
