"""deploy: serve the approved bundle, then make it the champion.

1. Render the InferenceService (vLLM predictor + prompt transformer) and validate it strictly.
2. ``deploy_target="kserve"``: apply it through the Kubernetes API as a canary, wait for Ready, send a
   few evaluation examples through its OpenAI-compatible route, and promote it to 100% of traffic or
   roll back to the previous spec (serving/rollout.py). ``"none"`` (the local default) stops at the
   validated manifest: there is no cluster to apply it to.
3. Only then move the MLflow ``champion`` alias (compare-and-set against the champion the gate
   compared with). If another promotion moved it meanwhile, the deployment is rolled back too.

Every outcome is in the step's Markdown report, the audit log, and the ``deployment`` output.
"""

import typing
from dataclasses import dataclass, field

import yaml

from champion.bundle import Bundle
from champion.errors import DeployError
from champion.interrupt import refuse_if_cancelled
from champion.parameters import PromotionParameters
from prompts import PromptTemplate
from serving.manifests import Autoscaling, render_inference_service, validate_strict
from serving.registry import ChampionMoved, append_audit, connect, current_champion, promote_version

DEPLOY_TARGETS = typing.get_args(
    PromotionParameters.model_fields["deploy_target"].annotation
)  # one list: the parameter model's


def _default(name: str):
    return PromotionParameters.model_fields[name].default


@dataclass
class ServiceOptions:
    """Where and how the bundle is served: the deployment parameters, their defaults from the parameter model."""

    name: str = _default("service_name")
    namespace: str = _default("namespace")
    storage_uri: str = _default("storage_uri")
    runtime: str = _default("serving_runtime")
    deployment_mode: str = _default("deployment_mode")
    transformer_image: str = _default("transformer_image")
    service_account: str = _default("service_account")
    target: str = _default("deploy_target")
    canary_traffic_percent: int = _default("canary_traffic_percent")
    min_replicas: int = _default("min_replicas")
    max_replicas: int = _default("max_replicas")
    scale_metric: str = _default("scale_metric")
    scale_target: int = _default("scale_target")
    ready_timeout_s: float = _default("ready_timeout_s")
    poll_s: float = 5.0
    smoke_min_token_f1: float = _default("smoke_min_token_f1")
    kubeconfig: str = ""


@dataclass
class PromotionTarget:
    """The registry side: which version becomes the champion, and against which champion it was judged."""

    tracking_uri: str
    registered_model_name: str
    model_version: str
    prompt_version: int
    expected_champion: str | None
    audit_log: str = ""
    pipeline_run: str = ""


@dataclass
class DeployResult:
    status: str  # rolled_out | rolled_back | rendered (deploy_target=none); "skipped" comes from skip_deploy_op
    promoted: bool  # the alias moved: the bundle is the champion
    reason: str
    manifest: dict
    rollout: dict | None = None
    previous_champion: str | None = None
    events: list[dict] = field(default_factory=list)


def storage_uri_for(template: str, bundle: Bundle) -> str:
    """Fill ``{model_digest}`` / ``{bundle_id}`` in a storage URI template."""
    return template.format(model_digest=bundle.model_digest, bundle_id=bundle.id)


def render_for(bundle: Bundle, prompt: PromptTemplate, service: ServiceOptions, registry: PromotionTarget) -> dict:
    manifest = render_inference_service(
        bundle,
        prompt,
        name=service.name,
        namespace=service.namespace,
        storage_uri=storage_uri_for(service.storage_uri, bundle),
        model_version=registry.model_version,
        registered_model_name=registry.registered_model_name,
        transformer_image=service.transformer_image,
        runtime=service.runtime,
        deployment_mode=service.deployment_mode,
        service_account=service.service_account,
        pipeline_run=registry.pipeline_run,
        autoscaling=Autoscaling(service.min_replicas, service.max_replicas, service.scale_metric, service.scale_target),
    )
    validate_strict(manifest)
    return manifest


def deploy_bundle(
    bundle: Bundle,
    prompt: PromptTemplate,
    service: ServiceOptions,
    registry: PromotionTarget,
    smoke_examples: list[dict],
) -> DeployResult:
    if service.target not in DEPLOY_TARGETS:
        raise DeployError(
            f"unknown deploy target {service.target!r}.",
            f"choose one of {list(DEPLOY_TARGETS)} ('none' renders and validates only).",
        )
    manifest = render_for(bundle, prompt, service, registry)
    refuse_if_cancelled(f"deploying bundle {bundle.short_id}")
    audit = {
        "bundle_id": bundle.id,
        "model": registry.registered_model_name,
        "version": registry.model_version,
        "pipeline_run": registry.pipeline_run,
    }
    _, client, _ = connect(registry.tracking_uri)

    def promote() -> str | None:  # compare-and-set: raises ChampionMoved, and records the refusal, if the alias moved
        return promote_version(
            registry.tracking_uri,
            registry.registered_model_name,
            registry.model_version,
            expected=registry.expected_champion,
            prompt_name=prompt.name,
            prompt_version=registry.prompt_version,
            audit_log=registry.audit_log,
            audit=audit,
        )

    rollout = None
    outcome = None
    if service.target == "kserve":
        from serving.rollout import KServeRollout, kube_api
        from serving.smoke import smoke_test

        if current_champion(client, registry.registered_model_name) != registry.expected_champion:
            promote()  # never roll out a bundle that cannot become the champion: this refuses before any call

        rollout = KServeRollout(
            kube_api(service.kubeconfig),
            service.namespace,
            ready_timeout_s=service.ready_timeout_s,
            poll_s=service.poll_s,
        )
        outcome = rollout.run(
            manifest,
            canary_traffic_percent=service.canary_traffic_percent,
            smoke=lambda url: smoke_test(
                url, service.name, smoke_examples, floor=service.smoke_min_token_f1, bundle_id=bundle.id
            ),
        )
        append_audit(
            registry.audit_log,
            {
                "event": "deployment",
                **audit,
                "status": outcome.status,
                "reason": outcome.reason,
                "service": f"{service.namespace}/{service.name}",
            },
        )
        if not outcome.rolled_out:
            client.set_model_version_tag(
                registry.registered_model_name, registry.model_version, "champion.deployment", "rolled_back"
            )
            client.set_model_version_tag(
                registry.registered_model_name,
                registry.model_version,
                "champion.deployment_reason",
                outcome.reason[:4000],
            )
            return DeployResult(
                "rolled_back", False, outcome.reason, manifest, outcome.as_dict(), events=outcome.events
            )
    try:
        previous = promote()
    except ChampionMoved:
        if rollout is not None and outcome is not None:
            # The other promotion owns the alias; the cluster must serve what the registry says is live.
            if outcome.previous_spec is not None:
                rollout.rollback(service.name, outcome.previous_spec)
            append_audit(
                registry.audit_log,
                {
                    "event": "deployment",
                    **audit,
                    "status": "rolled_back",
                    "reason": "the champion alias moved during the rollout",
                },
            )
        raise
    status = "rolled_out" if outcome else "rendered"
    client.set_model_version_tag(registry.registered_model_name, registry.model_version, "champion.deployment", status)
    reason = (
        outcome.reason
        if outcome
        else "manifest rendered and validated (deploy_target=none: no cluster); the alias moved."
    )
    return DeployResult(
        status,
        True,
        reason,
        manifest,
        outcome.as_dict() if outcome else None,
        previous,
        outcome.events if outcome else [],
    )


def deployment_report(result: DeployResult, service: ServiceOptions) -> str:
    meta = result.manifest["metadata"]
    lines = [
        f"# Deployment: {result.status}",
        "",
        f"- InferenceService `{meta['namespace']}/{meta['name']}` ({service.deployment_mode} mode, target `{service.target}`)",
        f"- bundle `{meta['annotations']['champion.io/bundle-id']}`, prompt `{meta['annotations']['champion.io/prompt']}`",
        f"- MLflow `{meta['annotations']['champion.io/mlflow-model']}`: "
        + (
            "alias `champion` moved here"
            + (f" (from version {result.previous_champion})" if result.previous_champion else "")
            if result.promoted
            else "alias unchanged"
        ),
        f"- storageUri `{result.manifest['spec']['predictor']['model']['storageUri']}`",
        "- manifest validated strictly against the KServe v1beta1 CRD schema (unknown keys rejected)",
        "",
        f"**Why:** {result.reason}",
    ]
    if result.events:
        lines += ["", "| time | step | details |", "|---|---|---|"]
        for event in result.events:
            details = ", ".join(
                f"{k}={v}" for k, v in event.items() if k not in ("time", "step") and v not in ("", None)
            )
            lines.append(f"| {event['time']} | {event['step']} | {details.replace('|', '/')} |")
    smoke = (result.rollout or {}).get("smoke")
    if smoke:
        lines += [
            "",
            f"## Smoke test: {'passed' if smoke['passed'] else 'failed'}",
            "",
            smoke["reason"],
            "",
            "| question | answer | reference | token F1 |",
            "|---|---|---|---|",
        ]
        for answer in smoke["answers"]:
            lines.append(
                f"| {answer['question']} | {answer['answer'].replace('|', '/')} | {answer['reference']} | {answer['token_f1']} |"
            )
    previous = (result.rollout or {}).get("previous_spec")
    if previous:
        lines += [
            "",
            "## Previous spec (what a rollback restores)",
            "",
            "```yaml",
            yaml.safe_dump(previous, sort_keys=False).rstrip(),
            "```",
        ]
    if service.target == "none":
        lines += [
            "",
            "Apply it to a cluster with `kubectl apply -f manifest.yaml`, or run the pipeline on Kubeflow with deploy_target=kserve.",
        ]
    return "\n".join(lines) + "\n"


class GateRejected(DeployError):
    """The gate rejected the bundle and the run was asked to fail on rejection (a CI check)."""
