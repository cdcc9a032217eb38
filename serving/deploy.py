"""deploy: serve the approved bundle, then make it the champion.

1. Render what serves the bundle and validate it strictly: the InferenceService (vLLM predictor + prompt
   transformer), or with ``serving_api="llminferenceservice"`` the bundle's LLMInferenceService, its prompt
   router and the front HTTPRoute (serving/llm_service.py).
2. ``deploy_target="kserve"``: roll it out through the Kubernetes API. InferenceService: a canary, wait for
   Ready, send a few evaluation examples through its OpenAI-compatible route, and promote it to 100% of
   traffic or roll back to the previous spec (serving/rollout.py). LLM API: the candidate beside the live
   bundle, Ready, smoke test, then (``shadow_requests`` > 0) mirrored production traffic judged in pairs by
   the shadow gate, then the canary split and 100% (serving/llm_rollout.py). ``"none"`` (the local default)
   stops at the validated manifests: there is no cluster to apply them to.
3. Only then move the MLflow ``champion`` alias (compare-and-set against the champion the gate
   compared with). If another promotion moved it meanwhile, the deployment is undone too. On the LLM API the
   previous bundle's objects are deleted after the alias moved.

Every outcome is in the step's Markdown report, the audit log, and the ``deployment`` output.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

import yaml

from champion.bundle import Bundle
from champion.errors import DeployError
from champion.interrupt import refuse_if_cancelled
from champion.parameters import PromotionParameters
from prompts import PromptTemplate
from registry.registry import ChampionMoved, append_audit, connect, current_champion, promote_version
from serving.kube import api_client
from serving.llm_rollout import BundleObjects, LLMRollout
from serving.llm_service import (
    Scaling,
    bundle_name,
    render_bundle_route,
    render_llm_inference_service,
    render_prompt_router,
)
from serving.manifests import Autoscaling, render_inference_service, validate_strict
from serving.rollout import KServeRollout, kube_api
from serving.shadow import mirrored_pairs, shadow_gate
from serving.smoke import smoke_test

if typing.TYPE_CHECKING:
    from serving.llm_rollout import LLMRollout
    from serving.rollout import KServeRollout

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
    serving_api: str = _default("serving_api")
    llm_gateway: str = _default("llm_gateway")
    llm_gateway_host: str = _default("llm_gateway_host")
    llm_autoscaler: str = _default("llm_autoscaler")
    gpus: int = _default("accelerator_count")
    request_log_url: str = _default("request_log_url")
    log_content: bool = _default("log_content")
    shadow_requests: int = _default("shadow_requests")
    shadow_timeout_s: float = _default("shadow_timeout_s")
    shadow_margin: float = _default("shadow_margin")
    shadow_poll_s: float = 10.0
    # Where a prompt router's Service answers the deploy step: the cluster's DNS name.
    router_url: str = "http://{service}.{namespace}.svc.cluster.local"

    @property
    def gateway(self) -> tuple[str, str]:
        """(namespace, name) of the LLM API's Gateway."""
        namespace, _, name = self.llm_gateway.partition("/")
        if not namespace or not name:
            raise DeployError(
                f"llm_gateway {self.llm_gateway!r} is not NAMESPACE/NAME.",
                "pass the Gateway the LLM API serves on, e.g. kserve/kserve-ingress-gateway.",
            )
        return namespace, name


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
    """What serves the bundle, validated strictly: the InferenceService, or on the LLM API a ``List`` of the
    bundle's LLMInferenceService, its prompt router and the front route serving it alone (what a first
    deployment applies)."""
    if service.serving_api == "llminferenceservice":
        objects = llm_objects_for(bundle, prompt, service, registry)
        route = front_route(service, [(objects.name, 100)])
        return {"apiVersion": "v1", "kind": "List", "items": [*objects.objects, route]}
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
        request_log_url=service.request_log_url,
        log_content=service.log_content,
    )
    validate_strict(manifest)
    return manifest


def llm_objects_for(bundle: Bundle, prompt: PromptTemplate, service: ServiceOptions, registry: PromotionTarget):

    name = bundle_name(service.name, bundle)
    return BundleObjects(
        name,
        render_llm_inference_service(
            bundle,
            name=name,
            namespace=service.namespace,
            model_uri=storage_uri_for(service.storage_uri, bundle),
            model_version=registry.model_version,
            registered_model_name=registry.registered_model_name,
            gpus=service.gpus,
            scaling=Scaling(service.min_replicas, service.max_replicas, service.llm_autoscaler),  # type: ignore[arg-type]
            pipeline_run=registry.pipeline_run,
        ),
        render_prompt_router(
            bundle,
            prompt,
            name=name,
            namespace=service.namespace,
            image=service.transformer_image,
            gateway_host=service.llm_gateway_host,
            model_version=registry.model_version,
            registered_model_name=registry.registered_model_name,
            request_log_url=service.request_log_url,
            log_content=service.log_content,
        ),
    )


def front_route(service: ServiceOptions, backends: list[tuple[str, int]], mirror: str = "") -> dict:

    gateway_namespace, gateway = service.gateway
    return render_bundle_route(
        name=service.name,
        namespace=service.namespace,
        gateway=gateway,
        gateway_namespace=gateway_namespace,
        backends=backends,
        mirror=mirror,
    )


def shadow_judge(service: ServiceOptions, judge, judge_reliability: dict | None):
    """The shadow stage's decision function, or None without a shadow stage. Refused before anything is deployed
    when it could only fail: no judge, or one that did not pass its check (it would never vote)."""
    if service.shadow_requests == 0:
        return None
    if judge is None or judge_reliability is None:
        raise DeployError(
            "the shadow stage needs the evaluator config's judge and its check, and none was given.",
            "use an evaluator config with a judge, or set shadow_requests=0.",
        )
    if judge_reliability.get("reliable") is not True:
        raise DeployError(
            "the shadow stage's judge did not pass its check, so the shadow gate could never pass: "
            + "; ".join(judge_reliability.get("reasons") or ["no reason recorded"]),
            "fix the judge (see the check_judge report), or set shadow_requests=0.",
        )

    def decide(live_bundle: str, candidate_bundle: str, since: str) -> dict:
        pairs = mirrored_pairs(
            service.request_log_url,
            live_bundle=live_bundle,
            candidate_bundle=candidate_bundle,
            since=since,
            want=service.shadow_requests,
            timeout_s=service.shadow_timeout_s,
            poll_s=service.shadow_poll_s,
        )
        return shadow_gate(pairs, judge, judge_reliability, margin=service.shadow_margin)

    return decide


def deploy_bundle(
    bundle: Bundle,
    prompt: PromptTemplate,
    service: ServiceOptions,
    registry: PromotionTarget,
    smoke_examples: list[dict],
    *,
    judge=None,
    judge_reliability: dict | None = None,
) -> DeployResult:
    """``judge`` and ``judge_reliability`` (check_judge's verdict on it) serve the shadow stage."""
    if service.target not in DEPLOY_TARGETS:
        raise DeployError(
            f"unknown deploy target {service.target!r}.",
            f"choose one of {list(DEPLOY_TARGETS)} ('none' renders and validates only).",
        )
    manifest = render_for(bundle, prompt, service, registry)
    shadow = shadow_judge(service, judge, judge_reliability) if service.target == "kserve" else None
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

    rollout: KServeRollout | LLMRollout | None = None
    outcome = None
    if service.target == "kserve":
        if current_champion(client, registry.registered_model_name) != registry.expected_champion:
            promote()  # never roll out a bundle that cannot become the champion: this refuses before any call

        subject: object
        if service.serving_api == "llminferenceservice":
            objects = llm_objects_for(bundle, prompt, service, registry)
            subject, served_name = objects, objects.name
            rollout = LLMRollout(
                api_client(service.kubeconfig),
                service.namespace,
                route_name=service.name,
                gateway=service.gateway[1],
                render_route=lambda backends, mirror: front_route(service, backends, mirror),
                router_url=lambda name: service.router_url.format(service=name, namespace=service.namespace),
                ready_timeout_s=service.ready_timeout_s,
                poll_s=service.poll_s,
            )
        else:
            subject, served_name = manifest, service.name
            rollout = KServeRollout(
                kube_api(service.kubeconfig),
                service.namespace,
                ready_timeout_s=service.ready_timeout_s,
                poll_s=service.poll_s,
            )
        outcome = rollout.run(
            subject,  # type: ignore[arg-type]  # each rollout takes its own API's objects
            canary_traffic_percent=service.canary_traffic_percent,
            smoke=lambda url: smoke_test(
                url, served_name, smoke_examples, floor=service.smoke_min_token_f1, bundle_id=bundle.id
            ),
            shadow=shadow,
        )
        append_audit(
            registry.audit_log,
            {
                "event": "deployment",
                **audit,
                "status": outcome.status,
                "reason": outcome.reason,
                "service": f"{service.namespace}/{service.name}",
                "serving_api": service.serving_api,
                **(
                    {
                        "shadow": {
                            key: outcome.shadow[key]
                            for key in ("passed", "n", "reasons", "candidate_wins", "live_wins", "ties")
                        }
                    }
                    if outcome.shadow
                    else {}
                ),
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
            rollout.undo(outcome)
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
    if rollout is not None:
        rollout.finish()  # the previous bundle's objects go only once the registry says the candidate is live
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


def served_object(manifest: dict) -> dict:
    """The object that carries the bundle's identity: the InferenceService, or the LLMInferenceService of a List."""
    return manifest["items"][0] if manifest.get("kind") == "List" else manifest


def deployment_report(result: DeployResult, service: ServiceOptions) -> str:
    served = served_object(result.manifest)
    meta = served["metadata"]
    where = (
        f"LLMInferenceService `{meta['namespace']}/{meta['name']}` behind its prompt router and the route "
        f"`{service.name}` on gateway `{service.llm_gateway}`"
        if served["kind"] == "LLMInferenceService"
        else f"InferenceService `{meta['namespace']}/{meta['name']}` ({service.deployment_mode} mode)"
    )
    weights = (
        served["spec"]["model"]["uri"]
        if served["kind"] == "LLMInferenceService"
        else served["spec"]["predictor"]["model"]["storageUri"]
    )
    lines = [
        f"# Deployment: {result.status}",
        "",
        f"- {where}, target `{service.target}`",
        f"- bundle `{meta['annotations']['champion.io/bundle-id']}`, prompt `{meta['annotations']['champion.io/prompt']}`",
        f"- MLflow `{meta['annotations']['champion.io/mlflow-model']}`: "
        + (
            "alias `champion` moved here"
            + (f" (from version {result.previous_champion})" if result.previous_champion else "")
            if result.promoted
            else "alias unchanged"
        ),
        f"- weights `{weights}`",
        "- manifests validated strictly against their CRD schemas (unknown keys rejected)",
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
    shadow = (result.rollout or {}).get("shadow")
    if shadow:
        lines += [
            "",
            f"## Shadow gate: {'passed' if shadow['passed'] else 'not passed'}",
            "",
            f"{shadow['n']} mirrored requests judged in pairs (reference-free, both orders): candidate better on "
            f"{shadow['candidate_wins']}, live better on {shadow['live_wins']}, ties {shadow['ties']}.",
            "",
            *[f"- {reason}" for reason in shadow["reasons"]],
        ]
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
