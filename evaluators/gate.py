"""The gate engine: may the challenger replace the champion? One engine for every decision.

``decide`` is called by the promotion gate (challenger vs champion in the same run) and by the
scheduled monitor (the champion now vs its previous scheduled evaluation). It returns a Decision and
never raises for a failed gate. It fails closed: a missing column, a NaN or infinite score (named by
example id), too few examples, a champion scored on other examples, a declared slice with too few
examples, or a decision in which nothing voted, each is a failed check with its reason.

Per metric the policy sets a direction, a floor on the mean, and a non-inferiority margin (absolute, or
relative to the champion's mean). Against a champion each compared metric gets an interval of the
challenger-minus-champion effect (paired bootstrap for continuous scores, Tango's score interval for
pass/fail ones) and passes only when the interval's bound clears the margin. A failure says whether the
challenger is *worse* (the whole interval lies beyond the margin) or the sample is *inconclusive*
(the interval straddles it), and for the latter how small a margin this sample can clear and about
how many examples would settle it. Tests across metrics and slices are corrected for multiplicity
(Holm's step-down by default). Judge-produced metrics vote only when the judge passed its checks.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field, computed_field, model_validator

from evaluators import catalog, sequential
from evaluators.catalog import MetricInfo
from evaluators.policy import GatePolicy, MetricRule, load_policy  # noqa: F401  (load_policy: the public entry point)
from evaluators.stats import (
    Effect,
    PairedCounts,
    holm_levels,
    mcnemar_exact,
    paired_bootstrap,
    settling_size,
    tango_paired,
    two_sample_bootstrap,
)

Status = Literal["pass", "fail", "inconclusive", "excluded"]
COMPARISON_TESTS = ("non-inferiority", "superiority")
_SHOWN_IDS = 5


class Check(BaseModel):
    metric: str
    test: str  # min_examples | pairing | slice_size | values | floor | non-inferiority | superiority | excluded | votes
    status: Status
    reason: str
    slice: str | None = None  # the tag of a declared slice; None for the whole set
    value: float | None = None  # challenger mean
    champion: float | None = None  # champion mean
    difference: float | None = (
        None  # effect estimate, in the metric's own orientation (challenger - champion), or a relative change
    )
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    threshold: float | None = None  # the floor, or the margin's edge on the difference scale
    scale: str = "difference"  # difference | relative | mean
    method: str = ""
    p_value: float | None = None
    level: float | None = None  # one-sided level this test ran at, after the multiplicity correction
    detectable: float | None = None  # the smallest margin this sample could clear (interval reach below the estimate)
    settling_examples: int | None = None  # about how many examples would settle an inconclusive test
    example_ids: list[str] = []  # examples behind a values failure
    direction: str = "higher"
    votes: bool = False  # this check takes part in the decision as a vote on a metric

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.status in ("pass", "excluded")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def excluded(self) -> bool:
        return self.status == "excluded"


class Look(BaseModel):
    """Where a sequential decision stands: look ``index`` of ``of``, on ``examples`` of the set's ``total``."""

    index: int = Field(ge=1)
    of: int = Field(ge=1)
    examples: int = Field(ge=0)
    total: int = Field(ge=1)

    @model_validator(mode="after")
    def _within_the_set(self) -> "Look":
        if self.index > self.of or self.examples > self.total:
            raise ValueError(
                f"look {self.index} of {self.of} on {self.examples} of {self.total} examples is outside the set: "
                "a look's index is at most the number of looks, its examples at most the set's size"
            )
        return self

    @property
    def last(self) -> bool:
        return self.index >= self.of


class Decision(BaseModel):
    # "continue" only at a sequential look before the last, when the evidence does not decide yet
    gate: Literal["passed", "failed", "continue"]
    mode: Literal["paired", "unpaired", "bootstrap"]
    policy: str
    policy_digest: str
    n_examples: int
    multiplicity: str
    checks: list[Check]
    look: Look | None = None  # sequential policies: the look this decision was taken at

    @property
    def decided_at(self) -> str:
        """Where a sequential decision was taken ("decided at look k of K, n of N examples"), or where it stands
        while the gate continues; empty for a fixed-n decision."""
        if self.look is None:
            return ""
        where = f"look {self.look.index} of {self.look.of}, {self.look.examples} of {self.look.total} examples"
        return where if self.gate == "continue" else f"decided at {where}"

    @property
    def passed(self) -> bool:
        return self.gate == "passed"

    @property
    def outcome(self) -> Literal["approved", "rejected", "continue"]:
        """What the gate's verdict means for the bundle: approved, rejected, or continue (a sequential gate
        looks again); register and deploy turn an approved bundle into promoted."""
        return "approved" if self.passed else "continue" if self.gate == "continue" else "rejected"

    @property
    def reasons(self) -> list[str]:
        failed = [c.reason for c in self.checks if not c.passed]
        excluded = [c.reason for c in self.checks if c.excluded]
        head = failed or [
            "every check passed"
            + ("" if self.mode != "bootstrap" else " (no champion yet: bootstrap rule, absolute floors only)")
        ]
        return head + excluded


class _PendingTest:
    """A comparison waiting for its multiplicity-corrected level."""

    def __init__(
        self,
        metric: str,
        rule: MetricRule,
        slice_tag: str | None,
        challenger: list[float],
        champion: list[float],
        *,
        margin: float | None,
        margin_relative: float | None,
    ) -> None:
        self.metric, self.rule, self.slice = metric, rule, slice_tag
        self.challenger, self.champion = challenger, champion
        self.margin, self.margin_relative = margin, margin_relative
        self.superiority = rule.require_superiority
        self.relative = margin_relative is not None and not self.superiority
        self.bound = 0.0 if self.superiority else -((margin_relative or 0.0) if self.relative else (margin or 0.0))
        self.p_value = 1.0


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _bad_ids(rows: Sequence[dict], metric: str) -> list[str]:
    return [str(row.get("id")) for row in rows if not math.isfinite(_number(row.get(metric)))]


def _ids_text(ids: list[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_IDS])
    return shown + (f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else "")


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _where(metric: str, slice_tag: str | None) -> str:
    return f"{metric} [slice {slice_tag}]" if slice_tag else metric


def _floor_check(metric: str, rule: MetricRule, values: list[float], floor: float, slice_tag: str | None) -> Check:
    value = _mean(values)
    ok = value >= floor if rule.direction == "higher" else value <= floor
    relation = ("≥" if ok else "<") if rule.direction == "higher" else ("≤" if ok else ">")
    kind = "floor" if rule.direction == "higher" else "ceiling"
    return Check(
        metric=metric,
        slice=slice_tag,
        test="floor",
        status="pass" if ok else "fail",
        value=value,
        threshold=floor,
        scale="mean",
        direction=rule.direction,
        votes=True,
        reason=f"{_where(metric, slice_tag)}: mean {value:.3f} {relation} {kind} {floor:.3f}",
    )


def _values_check(
    metric: str, rule: MetricRule, rows: Sequence[dict], champion_rows: Sequence[dict] | None, slice_tag: str | None
) -> Check | None:
    """Every score of a voting metric must be a finite number (and 0/1 for a pass/fail metric)."""
    bad = _bad_ids(rows, metric)
    bad_champion = _bad_ids(champion_rows, metric) if champion_rows is not None else []
    problems = []
    if bad:
        problems.append(f"{len(bad)} challenger score(s) missing, NaN or infinite (examples {_ids_text(bad)})")
    if bad_champion:
        problems.append(
            f"{len(bad_champion)} champion score(s) missing, NaN or infinite (examples {_ids_text(bad_champion)})"
        )
    if not problems and rule.kind == "binary":
        not_binary = [
            str(r.get("id")) for r in [*rows, *(champion_rows or [])] if _number(r.get(metric)) not in (0.0, 1.0)
        ]
        if not_binary:
            problems.append(
                f"kind: binary, but {len(not_binary)} score(s) are not exactly 0 or 1 (examples {_ids_text(not_binary)})"
            )
            bad = not_binary
    if not problems:
        return None
    return Check(
        metric=metric,
        slice=slice_tag,
        test="values",
        status="fail",
        direction=rule.direction,
        example_ids=(bad + bad_champion)[:50],
        votes=True,
        reason=f"{_where(metric, slice_tag)}: {'; '.join(problems)}; such scores are never counted as a pass or a loss: fix the evaluator or the data and re-run",
    )


def _effect(test: _PendingTest, policy: GatePolicy, confidence: float, paired: bool) -> tuple[Effect, str]:
    sign = 1.0 if test.rule.direction == "higher" else -1.0
    if test.rule.kind == "binary" and paired:
        counts = PairedCounts.of(test.challenger, test.champion, sign)
        effect = tango_paired(counts, confidence=confidence, bound=test.bound)
        if test.superiority:  # McNemar's exact test answers the superiority question; the interval is Tango's
            effect = Effect(
                effect.estimate,
                effect.low,
                effect.high,
                confidence,
                mcnemar_exact(counts).one_sided_p_better,
                0.0,
                effect.method + "; superiority by McNemar's exact test",
                effect.n,
            )
        return effect, "difference"
    sampler = paired_bootstrap if paired else two_sample_bootstrap
    effect = sampler(
        test.challenger,
        test.champion,
        sign=sign,
        confidence=confidence,
        bound=test.bound,
        relative=test.relative,
        resamples=policy.bootstrap_resamples,
        seed=policy.seed,
    )
    return effect, "relative" if test.relative else "difference"


def _levels(tests: list[_PendingTest], policy: GatePolicy) -> list[tuple[float, bool]]:
    if policy.multiplicity == "holm":
        return holm_levels([t.p_value for t in tests], policy.alpha)
    if policy.multiplicity == "bonferroni":
        return [(policy.alpha / max(len(tests), 1), True)] * len(tests)
    return [(policy.alpha, True)] * len(tests)


def _show(value: float, scale: str) -> str:
    return f"{value:+.1%}" if scale == "relative" else f"{value:+.3f}"


def _comparison_check(test: _PendingTest, policy: GatePolicy, level: float, reached: bool, paired: bool) -> Check:
    sign = 1.0 if test.rule.direction == "higher" else -1.0
    confidence = 1.0 - 2.0 * level  # a two-sided interval whose lower bound is a one-sided test at `level`
    effect, scale = _effect(test, policy, confidence, paired)
    # Shown in the metric's own orientation (challenger - champion, or the relative change of the mean).
    low, high = sorted((effect.low * sign, effect.high * sign))
    estimate, threshold = effect.estimate * sign, effect.bound * sign
    where = _where(test.metric, test.slice)
    mean_c, mean_k = _mean(test.challenger), _mean(test.champion)
    if test.superiority:
        what = "superiority: the bound must clear 0"
    elif test.relative:
        what = f"non-inferiority, margin {test.margin_relative:.0%} of the champion's mean"
    else:
        what = f"non-inferiority, margin {test.margin:.3f}"
    head = (
        f"{where}: challenger {mean_c:.3f} vs champion {mean_k:.3f}, {'change' if scale == 'relative' else 'difference'} {_show(estimate, scale)} "
        f"[{_show(low, scale)}, {_show(high, scale)}] at {confidence:.1%} ({what}; {policy.multiplicity} level {level:.4f})"
    )
    if test.superiority and test.rule.kind == "binary" and paired:
        clears = effect.p_value <= level and effect.estimate > 0
    else:
        clears = effect.low > effect.bound
    common: dict[str, Any] = dict(
        metric=test.metric,
        slice=test.slice,
        test="superiority" if test.superiority else "non-inferiority",
        value=mean_c,
        champion=mean_k,
        difference=estimate,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        threshold=threshold,
        scale=scale,
        method=effect.method,
        p_value=effect.p_value,
        level=level,
        detectable=effect.half_width,
        direction=test.rule.direction,
        votes=True,
    )
    if clears and reached:
        verdict = "superior" if test.superiority else "non-inferior: the interval's bound clears the margin"
        return Check(status="pass", reason=f"{head}: {verdict}", **common)
    if clears:
        return Check(
            status="inconclusive",
            reason=f"{head}: its bound clears the margin, but Holm's step-down stopped at an earlier failed test, so it cannot be claimed",
            **common,
        )
    if effect.high < effect.bound:
        verdict = (
            "worse than the champion"
            if test.superiority
            else "worse than the champion beyond the margin (the whole interval lies past it)"
        )
        return Check(status="fail", reason=f"{head}: {verdict}", **common)
    margin = -effect.bound
    needed = settling_size(effect, margin, effect.n) if not test.superiority else None
    reach = (
        f"this sample can only clear a margin of {effect.half_width:.1%}"
        if scale == "relative"
        else f"this sample can only clear a margin of {effect.half_width:.3f}"
    )
    settle = (
        f"; about {needed} examples would settle it if the {'change' if scale == 'relative' else 'difference'} stays at {_show(estimate, scale)}"
        if needed
        else "; the estimate itself is at or past the margin, so more examples are unlikely to show non-inferiority"
        if not test.superiority
        else ""
    )
    label = (
        "inconclusive: not shown superior"
        if test.superiority
        else "inconclusive: the interval straddles the margin, so the sample cannot show non-inferiority (nor that it is worse)"
    )
    return Check(status="inconclusive", reason=f"{head}: {label}; {reach}{settle}", settling_examples=needed, **common)


def _rows_with_tag(rows: Sequence[dict], tag: str) -> list[dict]:
    return [row for row in rows if tag in (row.get("tags") or ())]


def decide(
    table: Sequence[dict],
    policy: GatePolicy,
    *,
    champion_table: Sequence[dict] | None = None,
    judge_reliable: bool = False,
    judge_reasons: Sequence[str] = (),
    metrics: Mapping[str, MetricInfo] | None = None,
    allow_unpaired: bool = False,
    look: Look | None = None,
    upper_bounds: Mapping[str, float] | None = None,
) -> Decision:
    """Decide on one score table: the one engine behind the promotion gate, the monitor and the shadow gate.

    Args:
        table: The challenger's scores, one row per example: ``id``, optional ``tags`` (a list of slice
            names), and one column per metric.
        policy: The gate policy (``evaluators.policy.load_policy("default")``).
        champion_table: The champion's scores on the same examples, paired by ``id``; ``None`` on a first
            run, when only the policy's floors vote.
        judge_reliable: Whether the judge passed its bias battery; judge-produced metrics vote only then.
        judge_reasons: Why the judge was excluded, repeated in the checks of the metrics it would have graded.
        metrics: What each metric is (direction, range, whether the judge produces it), from the evaluator
            config's ``available_metrics()``; metrics it does not name are looked up in the built-in catalogue.
        allow_unpaired: Compare with a champion scored on other examples (two-sample, labelled as such);
            the monitor uses it when the evaluation set changed.
        look: With a sequential policy, the look these rows are (the first ``look.examples`` of the set's
            seeded order): the comparisons use anytime-valid confidence sequences, and the gate is ``continue``
            while they do not decide yet. ``None``: the fixed-n gate on the whole table.
        upper_bounds: Known upper bounds of unbounded amounts for this run (``completion_tokens``: the
            bundles' ``max_tokens``), which let a relative cost margin be tested sequentially.

    Returns:
        The decision: ``gate`` is ``passed`` only if every check passed; each check carries its interval,
        threshold, verdict and reason.

    The checks, in the order the report lists them: the sample (size, unique ids, pairing), each metric over
    the whole set (judge exclusion, values, floor, comparison), each slice, then the comparisons resolved
    together (one multiplicity correction over all of them), and a refusal when nothing voted.
    """
    checks = _sample_checks(table, policy)
    mode, champion_rows = _pair_with_champion(table, champion_table, allow_unpaired, checks)
    paired = mode == "paired"
    pending: list[_PendingTest] = []
    compared: list[str] = []  # whole-set metrics that vote and are compared (slices compare these)
    judge = (judge_reliable, judge_reasons)
    for metric, rule in policy.metrics.items():
        info = catalog.resolve(metric, metrics)
        test = _whole_set_checks(metric, rule, info, table, champion_rows, judge, checks)
        if test is not None:
            compared.append(metric)
            pending.append(test)
    usable = set(compared) | {
        m for m in policy.metrics if any(c.metric == m and c.test == "floor" and c.slice is None for c in checks)
    }
    for tag, slice_rule in policy.slices.items():
        pending += _slice_checks(tag, slice_rule, policy, table, champion_rows, paired, usable, compared, checks)
    sequential = look is not None and policy.sequential and paired
    if pending and sequential:
        assert look is not None
        checks += _sequential_comparisons(pending, policy, metrics, upper_bounds, look)
    elif pending:
        for test in pending:  # the p-value at the margin does not depend on the level: it orders Holm's step-down
            test.p_value = _effect(test, policy, 1.0 - 2.0 * policy.alpha, paired)[0].p_value
        for test, (level, reached) in zip(pending, _levels(pending, policy)):
            checks.append(_comparison_check(test, policy, level, reached, paired))
    if not any(c.votes for c in checks):
        checks.append(
            Check(
                metric="policy",
                test="votes",
                status="fail",
                reason="nothing voted: every metric was excluded, or had neither a floor nor a champion to compare with; an unexamined bundle is never promoted",
            )
        )
    gate: Literal["passed", "failed", "continue"] = "passed" if all(c.passed for c in checks) else "failed"
    if sequential:
        assert look is not None
        checks, gate = _sequential_outcome(checks, look, policy, table, metrics, len(pending))
    return Decision(
        gate=gate,
        look=look if sequential else None,
        mode=mode,
        policy=f"{policy.name}@{policy.version}",
        policy_digest=policy.digest,
        n_examples=len(table),
        multiplicity=f"sequential: Bonferroni over {len(pending)} confidence sequence(s), family-wise α={policy.alpha}, valid at every look"
        if sequential and policy.multiplicity != "none"
        else {
            "holm": f"Holm step-down over {len(pending)} comparison(s), family-wise α={policy.alpha}",
            "bonferroni": f"Bonferroni over {len(pending)} comparison(s), family-wise α={policy.alpha}",
            "none": f"no correction: each comparison at α={policy.alpha} (the gate is an intersection-union test)",
        }[policy.multiplicity],
        checks=checks,
    )


def _sample_checks(table: Sequence[dict], policy: GatePolicy) -> list[Check]:
    """Enough examples, and ids that attribute each score to one example."""
    n = len(table)
    checks = [
        Check(
            metric="examples",
            test="min_examples",
            status="pass" if n >= policy.min_examples else "fail",
            value=float(n),
            threshold=float(policy.min_examples),
            reason=f"{n} examples (need at least {policy.min_examples})",
        )
    ]
    ids = [str(row.get("id")) for row in table]
    if len(set(ids)) != len(ids):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        checks.append(
            Check(
                metric="examples",
                test="pairing",
                status="fail",
                example_ids=duplicated[:50],
                reason=f"example ids are not unique ({_ids_text(duplicated)}): scores cannot be attributed",
            )
        )
    return checks


def _pair_with_champion(
    table: Sequence[dict], champion_table: Sequence[dict] | None, allow_unpaired: bool, checks: list[Check]
) -> tuple[Literal["paired", "unpaired", "bootstrap"], list[dict] | None]:
    """The comparison's mode and the champion's rows in the challenger's order (paired), as they are
    (unpaired), or None (bootstrap: no champion). A champion scored on other examples fails the pairing."""
    if champion_table is None:
        return "bootstrap", None
    ids = [str(row.get("id")) for row in table]
    by_id = {str(row.get("id")): row for row in champion_table}
    missing = [i for i in ids if i not in by_id]
    if not missing and len(by_id) == len(champion_table) == len(ids):
        return "paired", [by_id[i] for i in ids]
    if allow_unpaired and by_id:
        return "unpaired", list(champion_table)
    checks.append(
        Check(
            metric="examples",
            test="pairing",
            status="fail",
            example_ids=missing[:50],
            reason=f"the champion was not scored on the same examples ({len(missing)} of {len(table)} missing, e.g. {_ids_text(missing)}): no paired comparison is possible",
        )
    )
    return "paired", None


def _whole_set_checks(
    metric: str,
    rule,
    info: MetricInfo | None,
    table: Sequence[dict],
    champion_rows: list[dict] | None,
    judge: tuple[bool, Sequence[str]],
    checks: list[Check],
) -> _PendingTest | None:
    """One metric over the whole set: appends its exclusion, value problems or floor to ``checks``, and returns
    its comparison with the champion when it has one to make."""
    judge_reliable, judge_reasons = judge
    if info is not None and info.judged and not judge_reliable:
        checks.append(_judge_excluded(metric, rule, table, judge_reasons))
        return None
    missing_from = (
        "the score table (evaluation did not produce it)"
        if not any(metric in row for row in table)
        else "the champion's score table"
        if champion_rows is not None and rule.compare and not any(metric in row for row in champion_rows)
        else None
    )
    if missing_from:
        checks.append(
            Check(
                metric=metric,
                test="values",
                status="fail",
                direction=rule.direction,
                votes=True,
                reason=f"{metric}: missing from {missing_from}",
            )
        )
        return None
    invalid = _values_check(metric, rule, table, champion_rows if rule.compare else None, None)
    if invalid is not None:
        checks.append(invalid)
        return None
    values = [_number(r[metric]) for r in table]
    if rule.floor is not None and values:
        checks.append(_floor_check(metric, rule, values, rule.floor, None))
    if champion_rows is None or not rule.compare or not values:
        return None
    return _PendingTest(
        metric,
        rule,
        None,
        values,
        [_number(r[metric]) for r in champion_rows],
        margin=rule.margin,
        margin_relative=rule.margin_relative,
    )


def _judge_excluded(metric: str, rule, table: Sequence[dict], judge_reasons: Sequence[str]) -> Check:
    """A judged metric while the judge may not vote: reported, and a failure only where the policy requires it."""
    why = "; ".join(judge_reasons) or "its reliability was not checked"
    present = [_number(r.get(metric)) for r in table]
    value = _mean(present) if present and all(math.isfinite(v) for v in present) else None
    return Check(
        metric=metric,
        test="excluded",
        status="fail" if rule.required else "excluded",
        direction=rule.direction,
        value=value,
        votes=rule.required,
        reason=f"{metric}: judge excluded from voting ({why})"
        + ("; the policy requires this metric's vote, so the decision cannot be made" if rule.required else ""),
    )


def _slice_size_check(tag: str, size: int, needed: int, reason: str) -> Check:
    return Check(
        metric="examples",
        slice=tag,
        test="slice_size",
        status="fail",
        value=float(size),
        threshold=float(needed),
        reason=reason,
    )


def _slice_checks(
    tag: str,
    slice_rule,
    policy: GatePolicy,
    table: Sequence[dict],
    champion_rows: list[dict] | None,
    paired: bool,
    usable: set[str],
    compared: list[str],
    checks: list[Check],
) -> list[_PendingTest]:
    """One slice: appends its size check and floors to ``checks``, and returns its comparisons."""
    rows = _rows_with_tag(table, tag)
    if len(rows) < slice_rule.min_examples:
        checks.append(
            _slice_size_check(
                tag,
                len(rows),
                slice_rule.min_examples,
                f"slice {tag}: {len(rows)} examples carry the tag, the policy needs at least {slice_rule.min_examples} to check it",
            )
        )
        return []
    for metric, floor in slice_rule.floors.items():
        if metric in usable:
            checks.append(_floor_check(metric, policy.metrics[metric], [_number(r[metric]) for r in rows], floor, tag))
    if champion_rows is None:
        return []
    champion_by_id = {str(r.get("id")): r for r in champion_rows}
    champion_slice = [champion_by_id[str(r.get("id"))] for r in rows] if paired else _rows_with_tag(champion_rows, tag)
    if not paired and len(champion_slice) < slice_rule.min_examples:
        checks.append(
            _slice_size_check(
                tag,
                len(champion_slice),
                slice_rule.min_examples,
                f"slice {tag}: the earlier evaluation has {len(champion_slice)} tagged examples, fewer than {slice_rule.min_examples}",
            )
        )
        return []
    pending = []
    for metric in policy.slice_metrics(tag):
        if metric not in compared:
            continue
        rule = policy.metrics[metric]
        margin, relative = rule.margin, rule.margin_relative
        if slice_rule.margin is not None:
            margin, relative = slice_rule.margin, None
        elif slice_rule.margin_relative is not None and rule.kind != "binary":
            margin, relative = None, slice_rule.margin_relative
        pending.append(
            _PendingTest(
                metric,
                rule,
                tag,
                [_number(r[metric]) for r in rows],
                [_number(r[metric]) for r in champion_slice],
                margin=margin,
                margin_relative=relative,
            )
        )
    return pending


INTERVAL_KEYS = ("difference", "ci_low", "ci_high")


def comparison_intervals(checks: Sequence[dict]) -> list[tuple[str, str | None, str, float]]:
    """(metric, slice or None, difference|ci_low|ci_high, value) of every comparison's finite figures."""
    return [
        (c["metric"], c.get("slice") or None, key, c[key])
        for c in checks
        if c.get("test") in COMPARISON_TESTS
        for key in INTERVAL_KEYS
        if isinstance(c.get(key), (int, float)) and math.isfinite(c[key])
    ]


def interval_metrics(checks: Sequence[dict]) -> dict[str, float]:
    """``<metric>[_<slice>]_difference`` / ``_ci_low`` / ``_ci_high`` of every comparison, for KFP Metrics and MLflow."""
    return {
        metric + (f"_slice_{tag}" if tag else "") + f"_{key}": value
        for metric, tag, key, value in comparison_intervals(checks)
    }


def format_number(value, signed: bool = False, scale: str = "difference") -> str:
    """How every report shows a number: 3 decimals, signed differences, relative changes in percent, "—" for none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    if scale == "relative" and signed:
        return f"{value:+.1%}"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def markdown_report(
    decision: Decision | dict, bundle_id: str, bundle_label: str, champion_label: str | None = None, outcome: str = ""
) -> str:
    """The gate's Markdown summary. ``outcome`` is the decision word when known (promoted|approved|rejected)."""
    if isinstance(decision, dict):
        decision = Decision.model_validate({k: decision[k] for k in Decision.model_fields if k in decision})
    word = outcome or decision.outcome
    verdict = f"{'✅' if decision.passed else '❌'} gate **{decision.gate.upper()}**: {word}"
    lines = [
        f"# Gate decision: {verdict}",
        "",
        f"- challenger: `{bundle_id}` ({bundle_label})",
        f"- champion: {champion_label or 'none yet (bootstrap rule: absolute floors only)'}",
        f"- policy: `{decision.policy}` (digest `{decision.policy_digest[:12]}`), {decision.n_examples} examples, {decision.mode} comparison",
        f"- multiplicity: {decision.multiplicity}",
        *([f"- sequential: {decision.decided_at}"] if decision.decided_at else []),
        "",
        "| metric | slice | test | challenger | champion | difference [interval] | threshold | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in decision.checks:
        interval = (
            f"{format_number(c.difference, True, c.scale)} [{format_number(c.ci_low, True, c.scale)}, {format_number(c.ci_high, True, c.scale)}]"
            if c.ci_low is not None
            else format_number(c.difference, True, c.scale)
        )
        result = {"pass": "pass", "excluded": "excluded", "fail": "**fail**", "inconclusive": "**inconclusive**"}[
            c.status
        ]
        threshold = format_number(c.threshold, c.test in COMPARISON_TESTS, c.scale)
        lines.append(
            f"| {c.metric} | {c.slice or 'all'} | {c.test} | {format_number(c.value)} | {format_number(c.champion)} | {interval} | {threshold} | {result} |"
        )
    slices = sorted({c.slice for c in decision.checks if c.slice})
    if slices:
        lines += ["", "## Slices", "", "| slice | checks | result |", "|---|---|---|"]
        for tag in slices:
            own = [c for c in decision.checks if c.slice == tag]
            lines.append(f"| {tag} | {len(own)} | {'pass' if all(c.passed for c in own) else '**fail**'} |")
    lines += ["", "## Why", ""] + [f"- {reason}" for reason in decision.reasons]
    return "\n".join(lines) + "\n"


# --- The sequential gate: confidence sequences at looks ---------------------------------------------------


def _sequential_comparisons(
    pending: list[_PendingTest],
    policy: GatePolicy,
    metrics: Mapping[str, MetricInfo] | None,
    upper_bounds: Mapping[str, float] | None,
    look: Look,
) -> list[Check]:
    bounds = dict(upper_bounds or {})
    level = policy.sequential_level(len(pending))
    return [
        _sequential_check(test, catalog.resolve(test.metric, metrics), bounds.get(test.metric), policy, level, look)
        for test in pending
    ]


def _sequential_outcome(
    checks: list[Check],
    look: Look,
    policy: GatePolicy,
    table: Sequence[dict],
    metrics: Mapping[str, MetricInfo] | None,
    comparisons: int,
) -> tuple[list[Check], Literal["passed", "failed", "continue"]]:
    """The checks as they stand at this look, and whether the gate stops (passed, failed) or continues."""
    infos = {name: catalog.resolve(name, metrics) for name in policy.metrics}
    checks = [_at_look(check, look, policy, table, infos, policy.sequential_level(comparisons)) for check in checks]
    return checks, _sequential_gate(checks, look)


def _sequential_check(
    test: _PendingTest, info: MetricInfo | None, upper: float | None, policy: GatePolicy, level: float, look: Look
) -> Check:
    """One comparison at a look, by a confidence sequence where the metric's range is known; a metric with no
    known range is compared once, on the whole set, by the fixed-n interval at the same level."""
    sign = 1.0 if test.rule.direction == "higher" else -1.0
    challenger, champion = np.asarray(test.challenger) * sign, np.asarray(test.champion) * sign
    finite_range = info is not None and math.isfinite(info.high) and math.isfinite(info.low)
    if test.relative and test.rule.direction == "lower" and (upper is not None or finite_range):
        bound = upper if upper is not None else info.high  # type: ignore[union-attr]
        effect = sequential.relative_cost(
            -challenger,
            -champion,
            upper=bound,
            margin_relative=test.margin_relative or 0.0,
            alpha=level,
            settle=look.last,
        )
        # the contrast is already oriented (positive = the challenger is within the margin)
        orient, threshold, shown = 1.0, 0.0, f"(1 + {test.margin_relative:.0%}) x champion - challenger"
    elif not test.relative and (finite_range or test.rule.kind == "binary"):
        width = 1.0 if test.rule.kind == "binary" else info.high - info.low  # type: ignore[union-attr]
        margin = 0.0 if test.superiority else (test.margin or 0.0)
        effect = sequential.paired_difference(
            challenger, champion, width=width, margin=margin, alpha=level, settle=look.last
        )
        orient, threshold, shown = sign, -margin, "difference"  # back to the metric's own orientation
    elif look.last:  # no known range: decided once, on the whole set, like the fixed-n gate
        return _comparison_check(test, policy, level, True, True)
    else:
        return Check(
            metric=test.metric,
            slice=test.slice,
            test="superiority" if test.superiority else "non-inferiority",
            status="inconclusive",
            level=level,
            direction=test.rule.direction,
            votes=True,
            method="fixed-n at the last look",
            reason=f"{_where(test.metric, test.slice)}: no known range, so it cannot be tested before the whole set "
            "is scored (fixed-n at the last look)",
        )
    low, high = sorted((effect.low * orient, effect.high * orient))
    estimate = effect.estimate * orient
    verdict = {
        "non-inferior": ("pass", "superior" if test.superiority else "non-inferior: the sequence clears the margin"),
        "worse": ("fail", "worse than the champion beyond the margin (the whole sequence lies past it)"),
        "undecided": ("inconclusive", "undecided: the confidence sequence still straddles the margin"),
    }[effect.verdict]
    settling = effect.settling
    if effect.verdict == "undecided" and look.last and settling is not None:
        outcome = {"non-inferior": "show it non-inferior", "worse": "show it worse"}.get(settling.side, "settle it")
        verdict = (
            "inconclusive",
            "inconclusive: the confidence sequence still straddles the margin after the whole set; "
            + (
                f"about {settling.examples} examples in all would {outcome} if the differences kept coming as they did"
                if settling.examples
                else f"no set of up to {sequential.SETTLING_CAP} examples would settle it at this margin"
            ),
        )
    return Check(
        metric=test.metric,
        slice=test.slice,
        test="superiority" if test.superiority else "non-inferiority",
        status=verdict[0],
        value=_mean(test.challenger),
        champion=_mean(test.champion),
        difference=estimate,
        ci_low=low,
        ci_high=high,
        confidence=1.0 - 2.0 * level,
        threshold=threshold * orient,
        scale="difference",
        method=effect.method,
        level=level,
        direction=test.rule.direction,
        votes=True,
        settling_examples=settling.examples if settling else None,
        reason=f"{_where(test.metric, test.slice)}: challenger {_mean(test.challenger):.3f} vs champion "
        f"{_mean(test.champion):.3f}, {shown} {estimate:+.3f} [{low:+.3f}, {high:+.3f}] after {effect.n} examples "
        f"(anytime-valid at level {level:.4f}): {verdict[1]}",
    )


def _at_look(
    check: Check,
    look: Look,
    policy: GatePolicy,
    table: Sequence[dict],
    infos: Mapping[str, MetricInfo | None],
    level: float,
) -> Check:
    """What a fixed-n check means before the last look: too few examples so far is not yet a failure, and a
    floor missed by the mean so far fails only once the mean's confidence sequence lies wholly past it (more
    examples may still lift it); data problems fail at once."""
    if look.last or check.status != "fail":
        return check
    if check.test == "min_examples" and look.total >= policy.min_examples:
        return check.model_copy(update={"status": "inconclusive", "reason": check.reason + " so far"})
    if check.test != "floor" or check.threshold is None:
        return check
    info = infos.get(check.metric)
    rows = _rows_with_tag(table, check.slice) if check.slice else table
    if info is not None and math.isfinite(info.low) and math.isfinite(info.high):
        sign = 1.0 if check.direction == "higher" else -1.0
        ends = sorted((sign * info.low, sign * info.high))
        values = np.array([sign * _number(r[check.metric]) for r in rows])
        effect = sequential.mean_against(
            values, sign * check.threshold, sequential.Range(*ends), level, "betting confidence sequence (mean)"
        )
        if effect.verdict == "worse":
            low, high = sorted((sign * effect.low, sign * effect.high))
            return check.model_copy(
                update={
                    "ci_low": low,
                    "ci_high": high,
                    "level": level,
                    "method": effect.method,
                    "reason": check.reason + f": the mean's confidence sequence [{low:.3f}, {high:.3f}] lies wholly "
                    f"past it after {effect.n} examples (anytime-valid at level {level:.4f})",
                }
            )
    return check.model_copy(
        update={"status": "inconclusive", "reason": check.reason + " so far (the floor is checked when the gate stops)"}
    )


def _sequential_gate(checks: list[Check], look: Look) -> Literal["passed", "failed", "continue"]:
    """Stop with a rejection as soon as anything fails, with a pass once every check passes; otherwise look
    again, and at the last look an undecided check is inconclusive, which fails."""
    if any(c.status == "fail" for c in checks):
        return "failed"
    if all(c.passed for c in checks):
        return "passed"
    return "failed" if look.last else "continue"
