"""evaluate: score every generation with the evaluators a versioned config names, and check the judge.

Scores: semantic similarity, exact match, token F1, ragas' BLEU/ROUGE-L/chrF/string similarity, and
(when the config has a judge) an LLM-as-judge grade with its rationale. The judge is checked on the
shipped calibration set every run; the gate counts its grades only if it passed.
"""

import math
import shutil
import tempfile
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path

from champion.cache import ExampleCache
from champion.errors import ConfigError, DataError
from champion.weights import default_cache_dir, fetch_weights
from evaluators import aggregate, catalog, score_examples
from evaluators.config import EvaluatorConfig, JudgeConfig, Reliability, build_metrics
from evaluators.judge import Judge, Sampling, preference
from evaluators.reliability import check_reliability
from generation.cached import cached_generator
from prompts import load_rubric


@dataclass
class Evaluation:
    table: list[dict]
    aggregates: dict[str, float]
    judge_spent: dict[str, int] = field(default_factory=dict)  # calls and tokens the judge cost this run (cache misses)


def build_judge(config: JudgeConfig, weights_cache: str = "", cache: ExampleCache | None = None):
    """The judge, its verdicts cached per example (keyed by the judge model's digest, or its endpoint)."""

    cache = cache or ExampleCache()
    if config.backend == "openai":
        # A hosted model can change behind its name: its verdicts are cached under the name and URL given.
        generator = cached_generator(
            "openai",
            config.model,
            cache,
            {"endpoint": config.base_url, "model": config.model},
            base_url=config.base_url,
            api_key_env=config.api_key_env,
        )
    else:
        # The judge's files are placed (hard links from the cache) in a folder of its own under the weights
        # cache, never in the system's temp directory, and removed with the judge or when the process ends.
        staging = (Path(weights_cache) if weights_cache else default_cache_dir()) / "judges"
        staging.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="judge-weights-", dir=staging))
        weights = fetch_weights(config.model, folder, cache_dir=weights_cache or None)
        # fp32 on a CPU (the backend's default): in bf16 (2.1x faster here) a verdict moved by up to 3e-4 with its
        # batch neighbours and between CPU kinds, and a run in containers no longer matched one here exactly.
        generator = cached_generator(
            config.backend, str(weights.path), cache, {"model_digest": weights.digest}, batch_size=0
        )
    judge = Judge(
        generator,
        load_rubric(config.pointwise_rubric),
        load_rubric(config.pairwise_rubric),
        max_repairs=config.max_repairs,
        sampling=Sampling(config.samples, config.temperature, config.min_sample_agreement),
        reference_free=load_rubric(config.reference_free_rubric),
    )
    if config.backend != "openai":
        weakref.finalize(judge, shutil.rmtree, folder, True)
    return judge


def evaluate_generations(
    rows: list[dict], config: EvaluatorConfig, *, weights_cache: str = "", judge=None, cache: ExampleCache | None = None
) -> Evaluation:
    """The per-example score table and its means. ``judge`` overrides the configured one; ``cache`` keeps
    embeddings and judge verdicts between runs. Whether the judge may vote is ``judge_reliability``'s
    question, asked once per judge (a step of its own)."""

    _check_references(rows, config)
    if judge is None and config.judge is not None:
        judge = build_judge(config.judge, weights_cache, cache)
    spent_before = judge.spent() if judge is not None else None  # ragas' judged metrics spend through it too
    metrics = build_metrics(config, judge.generator if judge is not None else None, cache)
    produced = config.metric_catalog()
    # Cost and latency are measured when generating; they are scored per example like any metric.
    measured = [name for name in catalog.GENERATION if name in produced]
    table = [
        {
            "question": r["question"],
            "reference": r["reference"],
            "output": r["output"],
            "tags": list(r.get("tags") or []),
            **scored,
            **{name: r.get(name, math.nan) for name in measured},
        }
        for r, scored in zip(rows, score_examples(rows, metrics))
    ]
    names = [m.spec.name for m in metrics] + measured
    judge_spent: dict[str, int] = {}
    if judge is not None and spent_before is not None:
        if config.reference_free:
            names += _compare_served(rows, table, judge)
        else:
            names += _grade(rows, table, judge)
        judge_spent = asdict(judge.spent() - spent_before)
    return Evaluation(table=table, aggregates={name: aggregate(table, name) for name in names}, judge_spent=judge_spent)


def _check_references(rows: list[dict], config: EvaluatorConfig) -> None:
    """Reference-based scores of examples without references would be silent nonsense; served answers are
    what a reference-free evaluation compares."""
    if config.reference_free:
        missing = [str(r.get("id")) for r in rows if not isinstance(r.get("served_answer"), str)]
        if missing:
            raise DataError(
                f"evaluator config {config.name!r} is reference-free (it compares served answers), but "
                f"{len(missing)} example(s) carry no served answer, e.g. {missing[:3]}.",
                "evaluate a request log (data_source = the log, content captured), or use a config with references.",
            )
        return
    unreferenced = [str(r.get("id")) for r in rows if not r.get("reference")]
    if unreferenced:
        raise ConfigError(
            f"{len(unreferenced)} example(s) have no reference (e.g. {unreferenced[:3]}): logged traffic? Evaluator "
            f"config {config.name!r} scores against references.",
            "evaluate logged requests with a reference-free config (evaluator_config=traffic).",
        )


def _grade(rows: list[dict], table: list[dict], judge) -> list[str]:
    """The pointwise judge's grade of each answer against its reference."""

    for row, verdict in zip(table, judge.grade(rows)):
        row[judge.spec.name] = judge.value(verdict)
        row[f"{judge.spec.name}_verdict"] = verdict.label
        row[f"{judge.spec.name}_rationale"] = verdict.rationale
        if verdict.agreement is not None:
            row[f"{judge.spec.name}_sample_agreement"] = verdict.agreement
        # What judging this example costs (a cached verdict reports what it cost when computed).
        row[catalog.JUDGE_COST.name] = verdict.tokens if verdict.cost.calls else math.nan
    return [judge.spec.name, catalog.JUDGE_COST.name]


def _compare_served(rows: list[dict], table: list[dict], judge) -> list[str]:
    """Each logged question: the answer production served against the bundle's own, without a reference, in
    both orders (evaluators.judge.preference: 1 served better, 0.5 tie, 0 worse)."""

    verdicts = judge.compare(rows, [r["served_answer"] for r in rows], [r["output"] for r in rows], reference_free=True)
    name = catalog.SERVED_PREFERENCE.name
    for row, source, verdict in zip(table, rows, verdicts):
        row[name] = preference(verdict.winner)
        row["served_answer"] = source["served_answer"]
        row[f"{name}_rationale"] = verdict.forward.rationale
        row[catalog.JUDGE_COST.name] = verdict.cost.tokens if verdict.cost.calls else math.nan
    return [name, catalog.JUDGE_COST.name]


def judge_reliability(
    config: EvaluatorConfig, *, weights_cache: str = "", judge=None, cache: ExampleCache | None = None
) -> dict:
    """Whether the configured judge may vote (evaluators/reliability.py): every bias family of the probe set
    at or above its threshold, and agreement with people. ``{"reliable", "reasons", "metrics", "families",
    "agreement", "cost", "spent", "order_free"}``; not reliable when there is no judge."""

    if judge is None:
        if config.judge is None:
            return {"reliable": False, "reasons": ["no judge configured"], "metrics": {}}
        judge = build_judge(config.judge, weights_cache, cache)
    thresholds = config.judge.reliability if config.judge else Reliability()
    return check_reliability(judge, thresholds).as_dict()


def judge_markdown(reliability: dict) -> str:
    verdict = "votes in the gate" if reliability["reliable"] else "**does not vote** in the gate"
    lines = [f"# Judge reliability: the judge {verdict}", ""]
    lines += ["## Why", ""] + [f"- {reason}" for reason in reliability["reasons"]]
    families = reliability.get("families") or []
    if families:
        scoring = (
            "order-free (log-probabilities of both orders averaged)"
            if reliability.get("order_free")
            else "both orders must agree"
        )
        lines += ["", f"## Bias battery ({scoring})", "", "| family | score | threshold | probes | result | notes |"]
        lines.append("|---|---|---|---|---|---|")
        for f in families:
            result = "not measured" if not f["measured"] else ("pass" if f["passed"] else "**FAIL**")
            score = "–" if f["score"] != f["score"] else f"{f['score']:.2f}"
            notes = f["detail"] + (f" missed: {', '.join(f['misses'][:8])}" if f["misses"] else "")
            lines.append(f"| {f['family']} | {score} | {f['threshold']:.2f} | {f['n']} | {result} | {notes} |")
    agreement = reliability.get("agreement")
    if agreement:
        lines += [
            "",
            "## Agreement with people",
            "",
            f"- labelled set `{agreement['source']}` ({agreement['kind']}, {agreement['n']} items): accuracy "
            f"{agreement['accuracy']:.2f}, Cohen's kappa {agreement['kappa']:.2f} (95% CI {agreement['kappa_low']:.2f} "
            f"to {agreement['kappa_high']:.2f}); the lower end must clear {agreement['min_kappa']:.2f}: "
            + ("**met**" if agreement["passed"] else "**not met**"),
        ]
    cost, spent = reliability.get("cost"), reliability.get("spent")
    if cost and spent:
        lines += [
            "",
            "## Cost",
            "",
            f"- the whole check: {cost['calls']} calls, {cost['prompt_tokens']} prompt + {cost['completion_tokens']} completion tokens",
            f"- spent this run: {spent['calls']} calls, {spent['prompt_tokens']} prompt + {spent['completion_tokens']} completion tokens"
            + (" (every verdict came from the cache)" if spent["calls"] == 0 else ""),
        ]
    return "\n".join(lines) + "\n"
