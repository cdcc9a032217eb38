"""May the judge vote? A bias battery, one family at a time, and agreement with people.

The battery (``evaluators/probes/<version>/``, the version is part of the evaluator config) holds labelled
pairs per known bias of LLM judges. Each family is scored on its own and held to its own threshold:

==================  ===========================================================  ==========================
family              probes                                                       score
==================  ===========================================================  ==========================
calibration         a right and a plainly wrong answer                           accuracy
position            the same pairs, both orders (incl. equally good answers)     share of order-stable verdicts
verbosity           a short right answer vs a long wrong one, and the reverse    accuracy
tone                a confident wrong answer vs a hedged right one               accuracy
self_preference     a right answer vs the judge model's *own* wrong answer       accuracy
reference_free      right vs wrong, judged without the reference                 accuracy
==================  ===========================================================  ==========================

With log-probabilities the position family passes by construction (the verdict averages both orders);
the report still shows the raw per-order consistency and how much the judge favours slot A. Where the judge
model answers a self-preference question right, it is asked for a plausible wrong answer in its own words,
so a judge that knows every answer is measured too. A family with fewer than ``min_probes`` measurable
probes is not measured, and the judge does not vote: too few probes cannot show it is free of the bias.

Agreement with people: a labelled set (``evaluators/labels/``, or a path) with a human verdict per item;
Cohen's kappa with a 95% bootstrap interval. The lower end must clear ``min_kappa``: "the judge agrees
with people" has to be shown, not merely not refuted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from champion.digests import sha256_file, sha256_json
from champion.errors import ConfigError
from champion.jsonl import read_jsonl
from evaluators.config import Reliability
from evaluators.judge import Cost, Judge, PairVerdict
from evaluators.lexical import token_f1
from prompts import Decoding

PROBES_DIR = Path(__file__).resolve().parent / "probes"
LABELS_DIR = Path(__file__).resolve().parent / "labels"
FAMILIES = ("calibration", "position", "verbosity", "tone", "self_preference", "reference_free")
EXPECTED = ("first", "second", "tie")
HUMAN_PAIR_LABELS = {"A": "first", "B": "second", "tie": "tie"}
BOOTSTRAP_RESAMPLES = 2000


@dataclass
class FamilyResult:
    family: str
    score: float  # NaN when not measured
    threshold: float
    n: int
    measured: bool
    passed: bool
    detail: str = ""
    misses: list[str] = field(default_factory=list)  # ids of the probes the judge got wrong


@dataclass
class Agreement:
    source: str
    kind: str  # "pairwise" | "pointwise"
    n: int
    accuracy: float
    kappa: float
    kappa_low: float
    kappa_high: float
    min_kappa: float
    passed: bool
    misses: list[str] = field(default_factory=list)


@dataclass
class ReliabilityReport:
    reliable: bool
    reasons: list[str]
    families: list[FamilyResult]
    agreement: Agreement | None
    cost: Cost  # what the whole check costs the backend, cached or not
    spent: Cost  # what this run spent (cached verdicts cost nothing)
    order_free: bool

    def family(self, name: str) -> FamilyResult:
        return next(f for f in self.families if f.family == name)

    def as_metrics(self) -> dict[str, float]:
        metrics = {f"judge_probe_{f.family}": f.score for f in self.families}
        if self.agreement is not None:
            metrics |= {
                "judge_kappa": self.agreement.kappa,
                "judge_kappa_low": self.agreement.kappa_low,
                "judge_human_accuracy": self.agreement.accuracy,
            }
        metrics |= {
            "judge_check_calls": float(self.cost.calls),
            "judge_check_tokens": float(self.cost.tokens),
            # What this check spent (cache misses), under the names every judging step reports.
            "judge_spent_calls": float(self.spent.calls),
            "judge_spent_prompt_tokens": float(self.spent.prompt_tokens),
            "judge_spent_completion_tokens": float(self.spent.completion_tokens),
            "judge_reliable": float(self.reliable),
        }
        return metrics

    def as_dict(self) -> dict:
        return {
            "reliable": self.reliable,
            "reasons": self.reasons,
            "metrics": self.as_metrics(),
            "families": [asdict(f) for f in self.families],
            "agreement": asdict(self.agreement) if self.agreement else None,
            "cost": asdict(self.cost),
            "spent": asdict(self.spent),
            "order_free": self.order_free,
        }


# -- data -----------------------------------------------------------------------------------------


def probe_folder(version: str) -> Path:
    folder = PROBES_DIR / version
    if not folder.is_dir():
        known = sorted(p.name for p in PROBES_DIR.iterdir() if p.is_dir())
        raise ConfigError(f"no probe set {version!r} in {PROBES_DIR}.", f"use one of {known}.")
    return folder


def load_probes(version: str, family: str) -> list[dict]:
    path = probe_folder(version) / f"{family}.jsonl"
    rows = read_jsonl(path)
    for row in rows:
        needed = (
            {"id", "question", "reference", "good"}
            if family == "self_preference"
            else {"id", "question", "reference", "first", "second", "expected"}
        )
        missing = needed - set(row)
        if missing or (family != "self_preference" and row["expected"] not in EXPECTED):
            raise ConfigError(
                f"{path}: probe {row.get('id', '?')} lacks {sorted(missing)} or has an expected verdict other than {EXPECTED}.",
                "fix the probe file (see evaluators/probes/README.md).",
            )
    return rows


def labels_path(source: str) -> Path:
    packaged = LABELS_DIR / f"{source}.jsonl"
    path = packaged if packaged.exists() else Path(source)
    if not path.is_file():
        known = sorted(p.stem for p in LABELS_DIR.glob("*.jsonl"))
        raise ConfigError(
            f"no labelled set {source!r}: neither a packaged one ({known}) nor a file.",
            "name a packaged set, give the path of a JSONL labelled set, or '' for none.",
        )
    return path


def load_labels(source: str) -> tuple[str, list[dict]]:
    """(kind, rows): pairwise rows carry answer_a, answer_b and human in {A, B, tie}; pointwise rows carry
    answer and human (a grade label of the pointwise rubric). One kind per file."""
    path = labels_path(source)
    rows = read_jsonl(path)
    kinds = {"pairwise" if "answer_a" in row else "pointwise" for row in rows}
    if len(kinds) != 1:
        raise ConfigError(
            f"{path} mixes pairwise and pointwise items (or is empty).", "keep one kind of item per labelled set."
        )
    kind = kinds.pop()
    for number, row in enumerate(rows, 1):
        needed = (
            {"question", "answer_a", "answer_b", "human"} if kind == "pairwise" else {"question", "answer", "human"}
        )
        if not needed <= set(row) or row["human"] in (None, ""):
            raise ConfigError(
                f"{path}, item {number}: needs {sorted(needed)} with a human verdict (got {sorted(row)}).",
                "fill in 'human' for every item (an exported report has it empty until someone reviews it).",
            )
        if kind == "pairwise" and row["human"] not in HUMAN_PAIR_LABELS:
            raise ConfigError(
                f"{path}, item {number}: human verdict {row['human']!r} is not one of {sorted(HUMAN_PAIR_LABELS)}.",
                "write A, B or tie.",
            )
    return kind, rows


def review_items(challenger_rows: Sequence[dict], champion_rows: Sequence[dict]) -> list[dict]:
    """A gate's examples as pairwise items for people to label (``human`` empty): answer A is the champion's,
    B the challenger's. Reviewed, they become a labelled set (``reliability.human_labels``)."""
    champion_by_id = {row["id"]: row for row in champion_rows}
    return [
        {
            "id": str(row["id"]),
            "question": row.get("question", ""),
            "reference": row.get("reference", ""),
            "answer_a": champion_by_id[row["id"]].get("output", ""),
            "answer_b": row.get("output", ""),
            "human": None,
        }
        for row in challenger_rows
        if row["id"] in champion_by_id
    ]


def review_items_from_report(html: str) -> list[dict]:
    """The labelled-set items a gate report (HTML) links for download; an empty list for a report without a
    champion."""
    import html as markup
    import json
    import re
    from urllib.parse import unquote

    match = re.search(r'href="data:application/x-ndjson;charset=utf-8,([^"]*)"', html)
    if not match:
        return []
    return [json.loads(line) for line in unquote(markup.unescape(match.group(1))).splitlines() if line.strip()]


def data_digest(reliability: Reliability) -> str:
    """The content of the probe set and the labelled set: a change re-runs the judge check."""
    files = sorted(probe_folder(reliability.probe_set).glob("*.jsonl"))
    if reliability.human_labels:
        files.append(labels_path(reliability.human_labels))
    return sha256_json({path.name: sha256_file(path) for path in files})


# -- statistics -----------------------------------------------------------------------------------


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two raters over the same items (scikit-learn's); NaN when it is undefined (no items,
    or both raters used one and the same category, so chance agreement is total)."""
    from sklearn.metrics import cohen_kappa_score

    if len(a) == 0 or len(a) != len(b) or len(set(a) | set(b)) < 2:
        return math.nan
    return float(cohen_kappa_score(list(a), list(b)))


def resampled_kappas(codes_a, codes_b, n_categories: int):
    """Cohen's kappa of each row of two equal-shape integer arrays (one resample per row), vectorised; NaN
    where it is undefined."""
    import numpy as np

    observed = (codes_a == codes_b).mean(axis=1)
    chance = sum((codes_a == c).mean(axis=1) * (codes_b == c).mean(axis=1) for c in range(n_categories))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(chance < 1.0, (observed - chance) / (1.0 - chance), np.nan)


def kappa_interval(a: Sequence[str], b: Sequence[str], *, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of Cohen's kappa, resampling items (seeded, so a report is
    reproducible). Resamples where kappa is undefined are left out; with none left it is (NaN, NaN)."""
    import numpy as np

    n = len(a)
    if n < 2 or n != len(b):
        return math.nan, math.nan
    categories = sorted(set(a) | set(b))
    codes_a = np.array([categories.index(x) for x in a])
    codes_b = np.array([categories.index(x) for x in b])
    idx = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    kappas = resampled_kappas(codes_a[idx], codes_b[idx], len(categories))
    kappas = kappas[~np.isnan(kappas)]
    if not kappas.size:
        return math.nan, math.nan
    return float(np.percentile(kappas, 2.5)), float(np.percentile(kappas, 97.5))


# -- the battery ----------------------------------------------------------------------------------


def _accuracy(
    family: str, rows: list[dict], verdicts: list[PairVerdict], threshold: float, min_probes: int
) -> FamilyResult:
    hits = [v.winner == row["expected"] for row, v in zip(rows, verdicts)]
    misses = [row["id"] for row, hit in zip(rows, hits) if not hit]
    n = len(rows)
    score = sum(hits) / n if n else math.nan
    measured = n >= min_probes
    # Too few probes cannot show the judge is free of the bias: the judge does not earn its vote.
    detail = "" if measured else f"not measured: {n} probes (< min_probes {min_probes})"
    return FamilyResult(family, score, threshold, n, measured, measured and score >= threshold, detail, misses)


def _position(rows: list[dict], verdicts: list[PairVerdict], threshold: float, min_probes: int) -> FamilyResult:
    stable = [v.winner is not None for v in verdicts]
    raw = sum(v.consistent for v in verdicts) / len(verdicts)
    score = sum(stable) / len(verdicts)
    preferences = [v.position_preference for v in verdicts if v.position_preference is not None]
    if preferences:
        detail = (
            f"order-free scoring: stable by construction; judged one order at a time it agreed with itself on "
            f"{raw:.2f} of pairs, favouring slot A by {sum(preferences) / len(preferences):+.2f} nats on average"
        )
    else:
        detail = "both orders must agree for a verdict to count"
    return FamilyResult(
        "position",
        score,
        threshold,
        len(rows),
        len(rows) >= min_probes,
        len(rows) >= min_probes and score >= threshold,
        detail,
        [row["id"] for row, ok in zip(rows, stable) if not ok],
    )


WRONG_ANSWER_REQUEST = "Give a plausible but wrong answer to this question, in one sentence: {question}"


def _self_preference(judge: Judge, rows: list[dict], threshold: float, min_probes: int) -> tuple[FamilyResult, Cost]:
    """The judge model answers each probe question itself. Where its own answer is wrong (no token in common
    with the reference) it must still prefer a right answer to it. Where its own answer is right, it is asked
    for a plausible wrong answer in its own words, so a judge that knows every answer is measured too."""

    decoding = Decoding(max_tokens=48)

    own = judge.answer([row["question"] for row in rows], decoding)
    right = [i for i, answer in enumerate(own) if token_f1(answer.text, rows[i]["reference"]) > 0.0]
    asked_wrong = (
        judge.answer([WRONG_ANSWER_REQUEST.format(question=rows[i]["question"]) for i in right], decoding)
        if right
        else []
    )
    generated = list(own) + list(asked_wrong)
    cost = Cost(len(generated), sum(a.prompt_tokens for a in generated), sum(a.completion_tokens for a in generated))
    texts = [answer.text for answer in own]
    for i, answer in zip(right, asked_wrong):
        texts[i] = answer.text
    wrong = [(row, text) for row, text in zip(rows, texts) if token_f1(text, row["reference"]) == 0.0]
    if len(wrong) < min_probes:
        return FamilyResult(
            "self_preference",
            math.nan,
            threshold,
            len(wrong),
            False,
            False,
            f"not measured: it gave only {len(wrong)} (< {min_probes}) wrong answers of its own, even when asked for them",
        ), cost
    verdicts = judge.compare([r for r, _ in wrong], [r["good"] for r, _ in wrong], [text for _, text in wrong])
    result = _accuracy(
        "self_preference", [{**r, "expected": "first"} for r, _ in wrong], verdicts, threshold, min_probes
    )
    result.detail = (
        f"{len(rows) - len(right)} of {len(rows)} of its own answers were wrong, {len(wrong) - (len(rows) - len(right))} "
        "more written wrong on request; each was put against a right one"
    )
    return result, sum((v.cost for v in verdicts), cost)


def human_agreement(judge: Judge, source: str, min_kappa: float) -> tuple[Agreement, Cost]:
    kind, rows = load_labels(source)
    if kind == "pairwise":
        verdicts = judge.compare(rows, [r["answer_a"] for r in rows], [r["answer_b"] for r in rows])
        judged = [v.winner or "unstable" for v in verdicts]
        human = [HUMAN_PAIR_LABELS[r["human"]] for r in rows]
        cost = sum((v.cost for v in verdicts), Cost())
    else:
        grades = judge.grade([{**r, "output": r["answer"]} for r in rows])
        judged = [g.label or "unparseable" for g in grades]
        human = [str(r["human"]) for r in rows]
        cost = sum((g.cost for g in grades), Cost())
    kappa = cohen_kappa(human, judged)
    low, high = kappa_interval(human, judged)
    passed = not math.isnan(low) and low >= min_kappa
    agreement = Agreement(
        source,
        kind,
        len(rows),
        sum(h == j for h, j in zip(human, judged)) / len(rows),
        kappa,
        low,
        high,
        min_kappa,
        passed,
        [str(r.get("id", i + 1)) for i, (r, h, j) in enumerate(zip(rows, human, judged)) if h != j],
    )
    return agreement, cost


def check_reliability(judge: Judge, reliability: Reliability) -> ReliabilityReport:
    spent_before = judge.spent()
    cost = Cost()
    families: list[FamilyResult] = []
    for family in FAMILIES:
        threshold = reliability.threshold(family)
        if family == "self_preference":
            result, spent_here = _self_preference(
                judge, load_probes(reliability.probe_set, family), threshold, reliability.min_probes
            )
            families.append(result)
            cost = cost + spent_here
            continue
        rows = load_probes(reliability.probe_set, family)
        verdicts = judge.compare(
            rows, [r["first"] for r in rows], [r["second"] for r in rows], reference_free=family == "reference_free"
        )
        cost = sum((v.cost for v in verdicts), cost)
        if family == "position":
            families.append(_position(rows, verdicts, threshold, reliability.min_probes))
        else:
            families.append(_accuracy(family, rows, verdicts, threshold, reliability.min_probes))
    agreement = None
    if reliability.human_labels:
        agreement, spent_here = human_agreement(judge, reliability.human_labels, reliability.min_kappa)
        cost = cost + spent_here
    reasons = [
        (
            f"{f.family}: {f.score:.2f} < {f.threshold:.2f} on {f.n} probes"
            + (f" (missed {', '.join(f.misses[:5])})" if f.misses else "")
            if f.measured
            else f"{f.family}: {f.detail}"
        )
        for f in families
        if not f.passed
    ]
    if agreement is not None and not agreement.passed:
        reasons.append(
            f"agreement with people: Cohen's kappa {agreement.kappa:.2f} (95% CI {agreement.kappa_low:.2f} to "
            f"{agreement.kappa_high:.2f}) on {agreement.n} labelled items; the lower end must clear {agreement.min_kappa:.2f}"
        )
    return ReliabilityReport(
        reliable=not reasons,
        reasons=reasons or ["passed every bias family" + (" and agrees with people" if agreement else "")],
        families=families,
        agreement=agreement,
        cost=cost,
        spent=judge.spent() - spent_before,
        order_free=judge.uses_logprobs,
    )


def decision_summary(reliability: dict) -> dict:
    """What a gate decision records about its judge: whether it voted, why not, and what checking it cost."""
    families = reliability.get("families") or []
    agreement = reliability.get("agreement") or {}
    return {
        "voted": reliability.get("reliable") is True,
        "reasons": reliability.get("reasons", []),
        "failing_families": [f["family"] for f in families if not f["passed"]],
        "kappa": agreement.get("kappa"),
        "kappa_low": agreement.get("kappa_low"),
        "check_cost": reliability.get("cost"),
        "check_spent": reliability.get("spent"),
    }
