"""gate: decide from the per-example scores whether the bundle may be promoted (fails closed)."""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output

from components import cpu_step

VERSION = "1.1.0"


def decision_record(decision, bundle) -> dict:
    """The JSON record of one gate decision, as written to the run and to MLflow."""
    return {
        "bundle_id": bundle.id,
        "bundle": bundle.model_dump(mode="json"),
        "decision": decision.label,
        "passed": decision.passed,
        "reasons": decision.reasons,
        **decision.model_dump(mode="json", include={"policy", "policy_digest", "n_examples", "checks"}),
    }


@cpu_step
def gate_op(
    scores: Input[Dataset],
    bundle: str,
    gate_config: str,
    judge_reliability: str,
    decision: Output[Artifact],
    report: Output[Markdown],
    metrics: Output[Metrics],
) -> NamedTuple("GateOutputs", [("passed", bool)]):
    """gate v1.1.0: absolute floors from a versioned gate policy; a decision record and a Markdown report."""
    import json
    from collections import namedtuple

    from champion.bundle import Bundle
    from champion.jsonl import read_jsonl, write_json
    from components.gate import decision_record
    from evaluators.gate import decide, load_policy, markdown_report

    record = Bundle.model_validate_json(bundle)
    judge = json.loads(judge_reliability or "{}")
    verdict = decide(read_jsonl(scores.path), load_policy(gate_config), judge_reliable=judge.get("reliable") is True, judge_reasons=judge.get("reasons", []))
    write_json(decision_record(verdict, record), decision.path)
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(markdown_report(verdict, record.id, f"{record.prompt.name}@{record.prompt.version}"))
    metrics.log_metric("gate_passed", float(verdict.passed))
    decision.metadata.update({"decision": verdict.label, "bundle_id": record.id})
    return namedtuple("GateOutputs", ["passed"])(verdict.passed)
