"""evaluate: score every generation with the evaluators a versioned config names, and check the judge.

Scores: semantic similarity, exact match, token F1, ragas' BLEU/ROUGE-L/chrF/string similarity, and
(when the config has a judge) an LLM-as-judge grade with its rationale. The judge is checked on the
shipped calibration set every run; the gate counts its grades only if it passed.
"""

import tempfile
from dataclasses import dataclass

from champion.cache import ExampleCache
from evaluators.config import EvaluatorConfig, JudgeConfig, Reliability


@dataclass
class Evaluation:
    table: list[dict]
    aggregates: dict[str, float]


def build_judge(config: JudgeConfig, weights_cache: str = "", cache: ExampleCache | None = None):
    """The judge, its verdicts cached per example (keyed by the judge model's digest, or its endpoint)."""
    from evaluators.judge import Judge
    from prompts import load_rubric
    from serving.generation.cached import cached_generator

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
        from champion.weights import fetch_weights

        weights = fetch_weights(
            config.model, tempfile.mkdtemp(prefix="judge-weights-"), cache_dir=weights_cache or None
        )
        generator = cached_generator(
            config.backend, str(weights.path), cache, {"model_digest": weights.digest}, batch_size=16
        )
    return Judge(
        generator,
        load_rubric(config.pointwise_rubric),
        load_rubric(config.pairwise_rubric),
        max_repairs=config.max_repairs,
    )


def evaluate_generations(
    rows: list[dict], config: EvaluatorConfig, *, weights_cache: str = "", judge=None, cache: ExampleCache | None = None
) -> Evaluation:
    """The per-example score table and its means. ``judge`` overrides the configured one; ``cache`` keeps
    embeddings and judge verdicts between runs. Whether the judge may vote is ``judge_reliability``'s
    question, asked once per judge (a step of its own)."""
    import math

    from evaluators import aggregate, catalog, score_examples
    from evaluators.config import build_metrics

    if judge is None and config.judge is not None:
        judge = build_judge(config.judge, weights_cache, cache)
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
    if judge is not None:
        for row, verdict in zip(table, judge.grade(rows)):
            row[judge.spec.name] = judge.value(verdict)
            row[f"{judge.spec.name}_verdict"] = verdict.label
            row[f"{judge.spec.name}_rationale"] = verdict.rationale
            if catalog.JUDGE_COST.name in produced:
                row[catalog.JUDGE_COST.name] = verdict.tokens if verdict.tokens is not None else math.nan
        names.append(judge.spec.name)
        if catalog.JUDGE_COST.name in produced:
            names.append(catalog.JUDGE_COST.name)
    return Evaluation(table=table, aggregates={name: aggregate(table, name) for name in names})


def judge_reliability(
    config: EvaluatorConfig, *, weights_cache: str = "", judge=None, cache: ExampleCache | None = None
) -> dict:
    """Whether the configured judge may vote: position-swap consistency and accuracy on the shipped
    calibration set against the config's thresholds. ``{"reliable", "reasons", "metrics"}``; not
    reliable when there is no judge."""
    from evaluators.judge import check_reliability

    if judge is None:
        if config.judge is None:
            return {"reliable": False, "reasons": ["no judge configured"], "metrics": {}}
        judge = build_judge(config.judge, weights_cache, cache)
    thresholds = config.judge.reliability if config.judge else Reliability()
    report = check_reliability(
        judge,
        min_swap_consistency=thresholds.min_swap_consistency,
        min_calibration_accuracy=thresholds.min_calibration_accuracy,
    )
    return {"reliable": report.reliable, "reasons": report.reasons, "metrics": report.as_metrics()}


def judge_markdown(reliability: dict) -> str:
    verdict = "votes in the gate" if reliability["reliable"] else "**does not vote** in the gate"
    lines = [f"# Judge reliability: the judge {verdict}", ""]
    lines += [f"- {name}: {value:.2f}" for name, value in reliability["metrics"].items()]
    lines += ["", "## Why", ""] + [f"- {reason}" for reason in reliability["reasons"]]
    return "\n".join(lines) + "\n"
