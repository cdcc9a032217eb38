"""gate: decide whether the challenger may replace the champion (paired statistics; bootstrap rule without one)."""

from typing import NamedTuple, Optional

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from components import cpu_step

VERSION = "3.0.0"


def decision_record(decision, bundle, champion_bundle=None, champion_version: str = "") -> dict:
    """The JSON record of one gate decision, as written to the run, the audit log and MLflow.

    ``gate`` is the engine's verdict (passed|failed); ``decision`` is what happened to the bundle:
    ``rejected`` when the gate failed, ``approved`` when it passed (register and deploy turn an approved
    bundle into ``promoted`` once it serves and the alias moved)."""
    champion_label = f"version {champion_version} ({champion_bundle.prompt.name}@{champion_bundle.prompt.version}, bundle {champion_bundle.short_id})" if champion_bundle else None
    return {
        "bundle_id": bundle.id,
        "bundle": bundle.model_dump(mode="json"),
        "gate": decision.gate,
        "decision": "approved" if decision.passed else "rejected",
        "reasons": decision.reasons,
        "champion": {"version": champion_version, "bundle_id": champion_bundle.id, "bundle": champion_bundle.model_dump(mode="json")} if champion_bundle else None,
        "champion_label": champion_label,
        **decision.model_dump(mode="json", include={"mode", "policy", "policy_digest", "n_examples", "multiplicity", "checks"}),
    }


def run_gate(challenger_rows: list[dict], bundle, policy_ref: str, evaluator_config_ref: str, judge_reliability: dict, champion_rows: Optional[list[dict]] = None, champion_bundle=None, champion_version: str = ""):
    """(decision record, Markdown, HTML) for one challenger, with or without a champion."""
    from evaluators.config import load_evaluator_config
    from evaluators.gate import decide, markdown_report
    from evaluators.policy import check_against, load_policy
    from evaluators.report import gate_html

    policy = load_policy(policy_ref)
    metrics = load_evaluator_config(evaluator_config_ref).metric_catalog()
    check_against(policy, metrics, policy_ref)
    verdict = decide(challenger_rows, policy, champion_table=champion_rows, metrics=metrics, judge_reliable=judge_reliability.get("reliable") is True, judge_reasons=judge_reliability.get("reasons", []))
    record = decision_record(verdict, bundle, champion_bundle, champion_version)
    markdown = markdown_report(verdict, bundle.id, f"{bundle.prompt.name}@{bundle.prompt.version}", record["champion_label"])
    html = gate_html(record, challenger_rows, champion_rows, policy.primary or next(iter(policy.metrics)))
    return record, markdown, html


@cpu_step
def gate_op(
    scores: Input[Dataset],
    bundle: str,
    gate_config: str,
    evaluator_config: str,
    judge_reliability: str,
    decision: Output[Artifact],
    report: Output[Markdown],
    html_report: Output[HTML],
    metrics: Output[Metrics],
    champion_scores: Optional[Input[Dataset]] = None,
    champion_bundle: str = "",
    champion_version: str = "",
) -> NamedTuple("GateOutputs", [("passed", bool), ("decision_json", str)]):
    """gate v3.0.0: challenger vs champion on the same examples (paired bootstrap or Tango intervals against each margin, Holm-corrected, per slice), or floors only without a champion."""
    import json
    from collections import namedtuple

    from champion.bundle import Bundle
    from champion.jsonl import read_jsonl, write_json
    from components.gate import run_gate
    from evaluators.gate import interval_metrics

    record, markdown, html = run_gate(
        read_jsonl(scores.path),
        Bundle.model_validate_json(bundle),
        gate_config,
        evaluator_config,
        json.loads(judge_reliability or "{}"),
        champion_rows=read_jsonl(champion_scores.path) if champion_scores is not None else None,
        champion_bundle=Bundle.model_validate_json(champion_bundle) if champion_bundle else None,
        champion_version=champion_version,
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
    decision.metadata.update({"gate": record["gate"], "decision": record["decision"], "bundle_id": record["bundle_id"]})
    return namedtuple("GateOutputs", ["passed", "decision_json"])(record["gate"] == "passed", json.dumps(record, sort_keys=True))
