"""register: record the bundle and the gate decision in MLflow.

The work is done by ``registry.register`` (its docstring has the details).
"""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Metrics

from components import Step, cpu_step

STEP = Step(title="Register in MLflow", version="3.4.0", cacheable=False)


@cpu_step
def register_op(
    bundle: str,
    prompt: str,
    model_source: str,
    mlflow_tracking_uri: str,
    registered_model_name: str,
    audit_log: str,
    promote: bool,
    decision: str,
    expected_champion: str,
    pipeline_run: str,
    pushgateway_url: str,
    scores: Input[Dataset],
    eval_metrics: Input[Metrics],
) -> NamedTuple(
    "RegisterOutputs", [("model_version", str), ("approved", bool), ("release", bool), ("prompt_version", int)]
):
    """register v3.4.0: record bundle and decision in MLflow as a model version, approved if the gate passed; release it if also asked to promote; push the decision to a Pushgateway when one is configured. A sequential look that continues registers nothing (the audit log records the look)."""
    from champion.step_process import begin_step

    begin_step()
    import json
    import tempfile
    from collections import namedtuple

    from champion.bundle import Bundle
    from evaluators.gate import markdown_report
    from prompts import load_prompt
    from registry.register import register_bundle
    from registry.registry import default_audit_log

    verdict = json.loads(decision)
    record = Bundle.model_validate_json(bundle)
    outputs = namedtuple("RegisterOutputs", ["model_version", "approved", "release", "prompt_version"])
    audit_log = audit_log or default_audit_log(mlflow_tracking_uri)
    if verdict["gate"] == "continue":  # a sequential look that does not decide: the next look's run does
        from registry.register import record_look

        record_look(
            audit_log=audit_log,
            registered_model_name=registered_model_name,
            bundle=record,
            decision=verdict,
            pipeline_run=pipeline_run,
        )
        print(f"register: nothing registered; the gate looks again ({verdict['decided_at']})")
        return outputs("", False, False, 0)
    report = tempfile.NamedTemporaryFile("w", suffix=".md", delete=False)
    report.write(
        markdown_report(
            verdict, record.id, f"{record.prompt.name}@{record.prompt.version}", verdict.get("champion_label")
        )
    )
    report.close()
    result = register_bundle(
        tracking_uri=mlflow_tracking_uri,
        registered_model_name=registered_model_name,
        bundle=record,
        prompt=load_prompt(prompt),
        decision=verdict,
        files={"gate_report.md": report.name, "scores.jsonl": scores.path},
        weights_source=model_source,
        expected_champion=expected_champion or None,
        audit_log=audit_log,
        metrics={name: value for name, value in eval_metrics.metadata.items() if isinstance(value, (int, float))},
        pipeline_run=pipeline_run,
    )
    print(
        f"register: {registered_model_name} version {result.model_version}; approved: {result.approved}; promote: {promote}"
    )
    if pushgateway_url:  # the decision is recorded above; a monitoring outage must not undo it, so it only warns
        from registry.run_metrics import ExportError, export, gate_metrics

        try:
            export(
                gate_metrics(registered_model_name, verdict),
                model=registered_model_name,
                kind="promotion",
                pushgateway_url=pushgateway_url,
            )
        except ExportError as exc:
            print(f"register: WARNING: {exc}")
    return outputs(result.model_version, result.approved, result.approved and promote, result.prompt_version)
