"""deploy: render the KServe InferenceService for a promoted bundle and validate it strictly.

Applying it to a cluster (canary, readiness, smoke test, rollback) is the serving issue's work; here
the step produces the exact manifest a cluster would receive, and refuses one the CRD would not accept.
"""

from typing import NamedTuple

from kfp.dsl import Artifact, Markdown, Output

from components import cpu_step

VERSION = "1.0.0"


def storage_uri_for(template: str, bundle) -> str:
    """Fill ``{model_digest}`` / ``{bundle_id}`` in a storage URI template."""
    return template.format(model_digest=bundle.model_digest, bundle_id=bundle.id)


def deployment_report(manifest: dict) -> str:
    meta = manifest["metadata"]
    model = manifest["spec"]["predictor"]["model"]
    return "\n".join(
        [
            "# Deployment: manifest rendered and validated",
            "",
            f"- InferenceService `{meta['namespace']}/{meta['name']}`",
            f"- bundle `{meta['annotations']['champion.io/bundle-id']}`",
            f"- MLflow `{meta['annotations']['champion.io/mlflow-model']}`",
            f"- storageUri `{model['storageUri']}`",
            "- validated strictly against the KServe v1beta1 CRD schema (unknown keys rejected)",
            "",
            "Apply it with `kubectl apply -f manifest.yaml` (the serving issue adds canary and rollback).",
        ]
    ) + "\n"


@cpu_step
def deploy_op(
    bundle: str,
    model_version: str,
    registered_model_name: str,
    service_name: str,
    namespace: str,
    storage_uri: str,
    serving_runtime: str,
    manifest: Output[Artifact],
    report: Output[Markdown],
) -> NamedTuple("DeployOutputs", [("deployment", str)]):
    """deploy v1.0.0: render the KServe InferenceService for the promoted bundle; validate it against the CRD."""
    import json
    from collections import namedtuple

    import yaml

    from champion.bundle import Bundle
    from components.deploy import deployment_report, storage_uri_for
    from serving.manifests import render_inference_service, validate_strict

    record = Bundle.model_validate_json(bundle)
    rendered = render_inference_service(
        record,
        name=service_name,
        namespace=namespace,
        storage_uri=storage_uri_for(storage_uri, record),
        model_version=model_version,
        registered_model_name=registered_model_name,
        runtime=serving_runtime,
    )
    validate_strict(rendered)
    with open(manifest.path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(rendered, handle, sort_keys=False)
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(deployment_report(rendered))
    manifest.metadata.update({"kind": "InferenceService", "name": service_name, "namespace": namespace})
    deployment = {"status": "rendered", "manifest": manifest.uri, "report": report.uri}
    return namedtuple("DeployOutputs", ["deployment"])(json.dumps(deployment, sort_keys=True))


@cpu_step
def skip_deploy_op(gate_passed: bool, report: Output[Markdown]) -> NamedTuple("DeployOutputs", [("deployment", str)]):
    """skip_deploy v1.0.0: say why nothing was deployed (the gate did not pass)."""
    import json
    from collections import namedtuple

    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(f"# Deployment: skipped\n\nThe gate passed: {gate_passed}. Nothing was rendered, deployed or promoted.\n")
    deployment = {"status": "skipped", "manifest": None, "report": report.uri}
    return namedtuple("DeployOutputs", ["deployment"])(json.dumps(deployment, sort_keys=True))
