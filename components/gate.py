"""gate: decide whether the challenger may replace the champion (paired statistics; bootstrap rule without one)."""

from typing import List, NamedTuple

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from components import Step, cpu_step

STEP = Step(title="Gate", version="4.3.0", cacheable=True)


@cpu_step
def gate_op(
    scores: Input[List[Dataset]],
    bundles: List[str],
    weights_sources: List[str],
    eval_metrics: Input[List[Metrics]],
    gate_config: str,
    evaluator_config: str,
    judge_reliability: str,
    champion_version: str,
    champion_model_digest: str,
    shards: int,
    eval_set: Input[Dataset],
    look: int,
    decision: Output[Artifact],
    report: Output[Markdown],
    html_report: Output[HTML],
    metrics: Output[Metrics],
    challenger_scores: Output[Dataset],
    challenger_metrics: Output[Metrics],
) -> NamedTuple(
    "GateOutputs", [("passed", bool), ("gate", str), ("decision_json", str), ("bundle", str), ("weights_source", str)]
):
    """gate v4.3.0: challenger vs champion on the same examples (paired bootstrap or Tango intervals against each margin, Holm-corrected, per slice; a sequential policy: confidence sequences at this run's look, passed, failed or continue, the word in its `gate` output), or floors only without a champion. The scored bundles arrive in the run's order: the challenger first, then the champion when there is one."""
    from champion.step_process import begin_step

    begin_step()
    import json
    from collections import namedtuple

    from champion.artifacts import persist_metadata
    from champion.bundle import Bundle
    from champion.jsonl import read_jsonl, write_json, write_jsonl
    from evaluators.decision import run_gate
    from evaluators.gate import interval_metrics
    from evaluators.scores import merge_scored

    # The scoring loop's parts (bundle-major, shard order), each bundle's put back together.
    scored = merge_scored(
        bundles,
        [read_jsonl(part.path) for part in scores],
        [{k: v for k, v in part.metadata.items() if k != "display_name"} for part in eval_metrics],
        shards=shards,
    )
    if len(scored) not in (1, 2) or len(weights_sources) != len(bundles):
        raise ValueError(
            f"the gate takes the challenger and at most one champion, got {len(scored)} scored bundles ({len(bundles)} parts, {len(weights_sources)} weights sources)"
        )
    bundles = [s.bundle for s in scored]
    weights_sources = [weights_sources[s.first] for s in scored]
    has_champion = len(scored) == 2
    if has_champion and Bundle.model_validate_json(bundles[1]).model_digest != champion_model_digest:
        from champion.pinning import PinMismatch

        raise PinMismatch(
            f"the champion's weights scored in this run (model digest {Bundle.model_validate_json(bundles[1]).model_digest[:12]}…) are not the ones registered for version {champion_version} ({champion_model_digest[:12]}…).",
            "restore the registered weights at the champion's weights source, or promote a new bundle; nothing was compared or promoted.",
        )
    record, markdown, html = run_gate(
        scored[0].table,
        Bundle.model_validate_json(bundles[0]),
        gate_config,
        evaluator_config,
        json.loads(judge_reliability or "{}"),
        champion_rows=scored[1].table if has_champion else None,
        champion_bundle=Bundle.model_validate_json(bundles[1]) if has_champion else None,
        champion_version=champion_version if has_champion else "",
        look=look,
        set_ids=[str(row.get("id")) for row in read_jsonl(eval_set.path)],
    )
    record["reports"] = {"decision": decision.uri, "markdown": report.uri, "html": html_report.uri}
    write_json(record, decision.path)
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(markdown)
    with open(html_report.path, "w", encoding="utf-8") as handle:
        handle.write(html)
    metrics.log_metric("gate_passed", float(record["gate"] == "passed"))
    for name, value in interval_metrics(record["checks"]).items():
        metrics.log_metric(name, value)
    decision.metadata.update(
        {"gate": record["gate"], "decision": record["decision"], "bundle_id": record["bundle_id"]}
        | ({"decided_at": record["decided_at"]} if record["decided_at"] else {})
    )
    # The challenger's scores and means, under their own names, for the steps after the gate.
    write_jsonl(scored[0].table, challenger_scores.path)
    challenger_scores.metadata.update(
        {k: v for k, v in scores[0].metadata.items() if k not in ("rows", "cache")} | {"rows": len(scored[0].table)}
    )
    challenger_metrics.metadata.update(scored[0].metrics)
    persist_metadata(metrics, challenger_metrics)
    outputs = namedtuple("GateOutputs", ["passed", "gate", "decision_json", "bundle", "weights_source"])
    return outputs(
        record["gate"] == "passed",
        record["gate"],
        json.dumps(record, sort_keys=True),
        bundles[0],
        weights_sources[0],
    )
