"""deploy: serve the approved bundle, then make it the champion.

The work is done by ``serving.deploy`` (its docstring has the details).
"""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components import cpu_step

VERSION = "3.1.0"


@cpu_step
def deploy_op(
    bundle: str,
    prompt: str,
    eval_set: Input[Dataset],
    model_version: str,
    prompt_version: int,
    registered_model_name: str,
    mlflow_tracking_uri: str,
    expected_champion: str,
    audit_log: str,
    pipeline_run: str,
    service_name: str,
    namespace: str,
    storage_uri: str,
    serving_runtime: str,
    deployment_mode: str,
    deploy_target: str,
    canary_traffic_percent: int,
    min_replicas: int,
    max_replicas: int,
    scale_metric: str,
    scale_target: int,
    ready_timeout_s: float,
    smoke_examples: int,
    smoke_min_token_f1: float,
    transformer_image: str,
    service_account: str,
    manifest: Output[Artifact],
    report: Output[Markdown],
) -> NamedTuple("DeployOutputs", [("deployment", str), ("promoted", bool)]):
    """deploy v3.1.0: render and validate the InferenceService (with its autoscaling); canary → smoke test → promote or roll back on KServe; then move the champion alias."""
    import json
    from collections import namedtuple

    import yaml

    from champion.bundle import Bundle
    from champion.jsonl import read_jsonl
    from prompts import load_prompt
    from serving.deploy import PromotionTarget, ServiceOptions, deploy_bundle, deployment_report
    from serving.registry import default_audit_log

    service = ServiceOptions(
        name=service_name,
        namespace=namespace,
        storage_uri=storage_uri,
        runtime=serving_runtime,
        deployment_mode=deployment_mode,
        transformer_image=transformer_image,
        service_account=service_account,
        target=deploy_target,
        canary_traffic_percent=canary_traffic_percent,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        scale_metric=scale_metric,
        scale_target=scale_target,
        ready_timeout_s=ready_timeout_s,
        smoke_min_token_f1=smoke_min_token_f1,
    )
    registry = PromotionTarget(
        tracking_uri=mlflow_tracking_uri,
        registered_model_name=registered_model_name,
        model_version=model_version,
        prompt_version=prompt_version,
        expected_champion=expected_champion or None,
        audit_log=audit_log or default_audit_log(mlflow_tracking_uri),
        pipeline_run=pipeline_run,
    )
    result = deploy_bundle(
        Bundle.model_validate_json(bundle),
        load_prompt(prompt),
        service,
        registry,
        read_jsonl(eval_set.path)[:smoke_examples],
    )
    with open(manifest.path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(result.manifest, handle, sort_keys=False)
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(deployment_report(result, service))
    manifest.metadata.update({"kind": "InferenceService", "name": service_name, "namespace": namespace})
    print(f"deploy: {result.status}: {result.reason}")
    deployment = {
        "status": result.status,
        "promoted": result.promoted,
        "reason": result.reason,
        "target": deploy_target,
        "manifest": manifest.uri,
        "report": report.uri,
    }
    return namedtuple("DeployOutputs", ["deployment", "promoted"])(
        json.dumps(deployment, sort_keys=True), result.promoted
    )
