"""deploy: serve the approved bundle, then make it the champion.

The work is done by ``serving.deploy`` (its docstring has the details).
"""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components import Step, cpu_step

STEP = Step(title="Deploy and move the champion alias", version="4.1.0", cacheable=False)


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
    serving_api: str,
    llm_gateway: str,
    llm_gateway_host: str,
    llm_autoscaler: str,
    accelerator_count: int,
    request_log_url: str,
    log_content: bool,
    shadow_requests: int,
    shadow_timeout_s: float,
    shadow_margin: float,
    evaluator_config: str,
    judge_reliability: str,
    weights_cache: str,
    cache_root: str,
    manifest: Output[Artifact],
    report: Output[Markdown],
) -> NamedTuple("DeployOutputs", [("deployment", str), ("promoted", bool)]):
    """deploy v4.1.0: render and validate the InferenceService, or on the LLM API the LLMInferenceService + prompt router + HTTPRoute; smoke test → shadow (mirrored traffic, judged in pairs) → canary → promote, or undo; then move the champion alias."""
    values = dict(locals())  # the DeploySettings fields arrive as parameters of the same names
    from champion.step_process import begin_step

    begin_step()
    import json
    from collections import namedtuple

    import yaml

    from champion.bundle import Bundle
    from champion.jsonl import read_jsonl
    from champion.parameters import DeploySettings, parse
    from prompts import load_prompt
    from registry.registry import default_audit_log
    from serving.deploy import (
        Deployment,
        PromotionTarget,
        deploy_bundle,
        deployment_output,
        deployment_report,
        served_object,
        shadow_stage_judge,
    )

    settings = parse(DeploySettings, {name: values[name] for name in DeploySettings.model_fields})
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
        Deployment(Bundle.model_validate_json(bundle), load_prompt(prompt), settings, registry, gpus=accelerator_count),
        read_jsonl(eval_set.path)[: settings.smoke_examples],
        judge=shadow_stage_judge(settings, evaluator_config, weights_cache, cache_root),
        judge_reliability=json.loads(judge_reliability) if judge_reliability else None,
    )
    with open(manifest.path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(result.manifest, handle, sort_keys=False)
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(deployment_report(result, settings))
    served = served_object(result.manifest)
    manifest.metadata.update(
        {"kind": served["kind"], "name": served["metadata"]["name"], "namespace": settings.namespace}
    )
    print(f"deploy: {result.status}: {result.reason}")
    deployment = deployment_output(result, settings, manifest_uri=manifest.uri, report_uri=report.uri)
    return namedtuple("DeployOutputs", ["deployment", "promoted"])(
        json.dumps(deployment, sort_keys=True), result.promoted
    )
