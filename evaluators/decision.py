"""gate: decide whether the challenger may replace the champion (paired statistics; bootstrap rule without one)."""

from typing import Optional

from evaluators.config import load_evaluator_config
from evaluators.gate import decide, markdown_report
from evaluators.policy import check_against, load_policy
from evaluators.reliability import decision_summary
from evaluators.report import gate_html


def decision_record(decision, bundle, champion_bundle=None, champion_version: str = "") -> dict:
    """The JSON record of one gate decision, as written to the run, the audit log and MLflow.

    ``gate`` is the engine's verdict (passed|failed); ``decision`` is what happened to the bundle:
    ``rejected`` when the gate failed, ``approved`` when it passed (register and deploy turn an approved
    bundle into ``promoted`` once it serves and the alias moved)."""
    champion_label = (
        f"version {champion_version} ({champion_bundle.prompt.name}@{champion_bundle.prompt.version}, bundle {champion_bundle.short_id})"
        if champion_bundle
        else None
    )
    return {
        "bundle_id": bundle.id,
        "bundle": bundle.model_dump(mode="json"),
        "gate": decision.gate,
        "decision": "approved" if decision.passed else "rejected",
        "reasons": decision.reasons,
        "champion": {
            "version": champion_version,
            "bundle_id": champion_bundle.id,
            "bundle": champion_bundle.model_dump(mode="json"),
        }
        if champion_bundle
        else None,
        "champion_label": champion_label,
        **decision.model_dump(
            mode="json", include={"mode", "policy", "policy_digest", "n_examples", "multiplicity", "checks"}
        ),
    }


def run_gate(
    challenger_rows: list[dict],
    bundle,
    policy_ref: str,
    evaluator_config_ref: str,
    judge_reliability: dict,
    champion_rows: Optional[list[dict]] = None,
    champion_bundle=None,
    champion_version: str = "",
):
    """(decision record, Markdown, HTML) for one challenger, with or without a champion."""

    policy = load_policy(policy_ref)
    metrics = load_evaluator_config(evaluator_config_ref).metric_catalog()
    check_against(policy, metrics, policy_ref)
    verdict = decide(
        challenger_rows,
        policy,
        champion_table=champion_rows,
        metrics=metrics,
        judge_reliable=judge_reliability.get("reliable") is True,
        judge_reasons=judge_reliability.get("reasons", []),
    )

    record = decision_record(verdict, bundle, champion_bundle, champion_version)
    record["judge"] = decision_summary(judge_reliability)
    markdown = markdown_report(
        verdict, bundle.id, f"{bundle.prompt.name}@{bundle.prompt.version}", record["champion_label"]
    )
    html = gate_html(record, challenger_rows, champion_rows, policy.primary or next(iter(policy.metrics)))
    return record, markdown, html
