"""gate: decide whether the challenger may replace the champion (paired statistics; bootstrap rule without one)."""

from typing import Optional, Sequence

from evaluators.config import load_evaluator_config
from evaluators.gate import Look, decide, markdown_report
from evaluators.policy import check_against, load_policy
from evaluators.reliability import decision_summary
from evaluators.report import gate_html
from evaluators.sequential import look_counts


def decision_record(decision, bundle, champion_bundle=None, champion_version: str = "") -> dict:
    """The JSON record of one gate decision, as written to the run, the audit log and MLflow.

    ``gate`` is the engine's verdict (passed|failed, or continue at a sequential look that does not decide
    yet); ``decision`` is what happened to the bundle: ``rejected`` when the gate failed, ``approved`` when it
    passed (register and deploy turn an approved bundle into ``promoted`` once it serves and the alias moved),
    ``continue`` while a sequential gate looks again. ``look``/``decided_at`` say where a sequential decision
    stands (None/"" for the fixed-n gate)."""
    champion_label = (
        f"version {champion_version} ({champion_bundle.prompt.name}@{champion_bundle.prompt.version}, bundle {champion_bundle.short_id})"
        if champion_bundle
        else None
    )
    return {
        "bundle_id": bundle.id,
        "bundle": bundle.model_dump(mode="json"),
        "gate": decision.gate,
        "decision": decision.outcome,
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
            mode="json", include={"mode", "policy", "policy_digest", "n_examples", "multiplicity", "checks", "look"}
        ),
        "decided_at": decision.decided_at,
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
    *,
    look: int = 1,
    set_ids: Sequence[str] = (),
):
    """(decision record, Markdown, HTML) for one challenger, with or without a champion.

    With a sequential policy and a champion, ``look`` is this run's look (1 = the first) and ``set_ids`` the
    evaluation set's example ids in its seeded order: the challenger was scored on the look's first examples
    (``look_counts``), the champion's rows are paired on those, and the gate may say "continue"."""

    policy = load_policy(policy_ref)
    metrics = load_evaluator_config(evaluator_config_ref).metric_catalog()
    check_against(policy, metrics, policy_ref)
    at_look = None
    if policy.sequential and champion_rows is not None and set_ids:
        counts = look_counts(policy, len(set_ids), look)
        at_look = Look(index=look, of=len(counts), examples=len(challenger_rows), total=len(set_ids))
        seen = set(set_ids[: counts[look - 1]])
        champion_rows = [row for row in champion_rows if str(row.get("id")) in seen]
    verdict = decide(
        challenger_rows,
        policy,
        champion_table=champion_rows,
        metrics=metrics,
        judge_reliable=judge_reliability.get("reliable") is True,
        judge_reasons=judge_reliability.get("reasons", []),
        look=at_look,
        upper_bounds=_max_tokens(bundle, champion_bundle),
    )

    record = decision_record(verdict, bundle, champion_bundle, champion_version)
    record["judge"] = decision_summary(judge_reliability)
    markdown = markdown_report(
        verdict, bundle.id, f"{bundle.prompt.name}@{bundle.prompt.version}", record["champion_label"]
    )
    html = gate_html(record, challenger_rows, champion_rows, policy.primary or next(iter(policy.metrics)))
    return record, markdown, html


def _max_tokens(*bundles) -> dict[str, float]:
    """The bound a bundle's decoding puts on completion tokens (lets a relative cost margin be tested
    sequentially); none when a bundle does not say."""
    limits = [bundle.decoding.get("max_tokens") for bundle in bundles if bundle is not None]
    if not limits or not all(isinstance(limit, (int, float)) and limit > 0 for limit in limits):
        return {}
    return {"completion_tokens": float(max(limits))}
