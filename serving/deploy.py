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
from champion.cache import ExampleCache
from champion.errors import DeployError
from champion.interrupt import refuse_if_cancelled
from champion.parameters import DeploySettings
from evaluators.config import load_evaluator_config
from evaluators.evaluate import build_judge
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

DEPLOY_TARGETS = typing.get_args(DeploySettings.model_fields["deploy_target"].annotation)  # one list: the model's


@dataclass(frozen=True)
class ClusterAccess:
    """How the deploy step reaches the cluster and how often it looks: not pipeline parameters (the tests
    shorten the waits and point the router URL at 127.0.0.1)."""

    kubeconfig: str = ""
    poll_s: float = 5.0
    shadow_poll_s: float = 10.0
    # Where a prompt router's Service answers the deploy step: the cluster's DNS name.
    router_url: str = "http://{service}.{namespace}.svc.cluster.local"


def gateway_of(settings: DeploySettings) -> tuple[str, str]:
    """(namespace, name) of the LLM API's Gateway."""
    namespace, _, name = settings.llm_gateway.partition("/")
    if not namespace or not name:
        raise DeployError(
            f"llm_gateway {settings.llm_gateway!r} is not NAMESPACE/NAME.",
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
    status: str  # rolled_out | rolled_back | rendered (deploy_target=none); "skipped" comes from skip_deploy_op, "look_again" from look_again_op
    promoted: bool  # the alias moved: the bundle is the champion
    reason: str
    manifest: dict
    rollout: dict | None = None
    previous_champion: str | None = None
    events: list[dict] = field(default_factory=list)


def storage_uri_for(template: str, bundle: Bundle) -> str:
    """Fill ``{model_digest}`` / ``{bundle_id}`` in a storage URI template."""
    return template.format(model_digest=bundle.model_digest, bundle_id=bundle.id)


@dataclass(frozen=True)
class Deployment:
    """What one deployment works with: the bundle, its prompt, the settings and the registry side."""

    bundle: Bundle
    prompt: PromptTemplate
    settings: DeploySettings
    registry: PromotionTarget
    gpus: int = 1  # accelerators per served replica (the pipeline's accelerator_count)


class InferenceServiceApi:
    """KServe's InferenceService: a vLLM predictor behind the prompt transformer, rolled out by canary."""

    def render(self, d: Deployment) -> dict:
        s = d.settings
        manifest = render_inference_service(
            d.bundle,
            d.prompt,
            name=s.service_name,
            namespace=s.namespace,
            storage_uri=storage_uri_for(s.storage_uri, d.bundle),
            model_version=d.registry.model_version,
            registered_model_name=d.registry.registered_model_name,
            transformer_image=s.transformer_image,
            runtime=s.serving_runtime,
            deployment_mode=s.deployment_mode,
            service_account=s.service_account,
            pipeline_run=d.registry.pipeline_run,
            autoscaling=Autoscaling(s.min_replicas, s.max_replicas, s.scale_metric, s.scale_target),
            request_log_url=s.request_log_url,
            log_content=s.log_content,
        )
        validate_strict(manifest)
        return manifest

    def rollout(self, d: Deployment, manifest: dict, access: ClusterAccess) -> tuple[KServeRollout, object, str]:
        """(the rollout, what it applies, the name its smoke test calls)."""
        rollout = KServeRollout(
            kube_api(access.kubeconfig),
            d.settings.namespace,
            ready_timeout_s=d.settings.ready_timeout_s,
            poll_s=access.poll_s,
        )
        return rollout, manifest, d.settings.service_name


class LLMInferenceServiceApi:
    """KServe's LLM API: the bundle's LLMInferenceService and prompt router beside the live bundle's, behind a
    front HTTPRoute that mirrors, splits and finally moves the traffic."""

    def objects(self, d: Deployment) -> BundleObjects:
        s = d.settings
        name = bundle_name(s.service_name, d.bundle)
        return BundleObjects(
            name,
            render_llm_inference_service(
                d.bundle,
                name=name,
                namespace=s.namespace,
                model_uri=storage_uri_for(s.storage_uri, d.bundle),
                model_version=d.registry.model_version,
                registered_model_name=d.registry.registered_model_name,
                gpus=d.gpus,
                scaling=Scaling(s.min_replicas, s.max_replicas, s.llm_autoscaler),
                pipeline_run=d.registry.pipeline_run,
            ),
            render_prompt_router(
                d.bundle,
                d.prompt,
                name=name,
                namespace=s.namespace,
                image=s.transformer_image,
                gateway_host=s.llm_gateway_host,
                model_version=d.registry.model_version,
                registered_model_name=d.registry.registered_model_name,
                request_log_url=s.request_log_url,
                log_content=s.log_content,
            ),
        )

    def render(self, d: Deployment) -> dict:
        """A ``List`` of the bundle's LLMInferenceService, its prompt router and the front route serving it alone
        (what a first deployment applies)."""
        objects = self.objects(d)
        route = front_route(d.settings, [(objects.name, 100)])
        return {"apiVersion": "v1", "kind": "List", "items": [*objects.objects, route]}

    def rollout(self, d: Deployment, manifest: dict, access: ClusterAccess) -> tuple[LLMRollout, object, str]:
        s = d.settings
        objects = self.objects(d)
        rollout = LLMRollout(
            api_client(access.kubeconfig),
            s.namespace,
            route_name=s.service_name,
            gateway=gateway_of(s)[1],
            render_route=lambda backends, mirror: front_route(s, backends, mirror),
            router_url=lambda name: access.router_url.format(service=name, namespace=s.namespace),
            ready_timeout_s=s.ready_timeout_s,
            poll_s=access.poll_s,
        )
        return rollout, objects, objects.name


SERVING_APIS: dict[str, InferenceServiceApi | LLMInferenceServiceApi] = {
    "inferenceservice": InferenceServiceApi(),
    "llminferenceservice": LLMInferenceServiceApi(),
}


def serving_api(settings: DeploySettings) -> InferenceServiceApi | LLMInferenceServiceApi:
    """The serving API, chosen once from ``settings.serving_api``."""
    return SERVING_APIS[settings.serving_api]


def front_route(settings: DeploySettings, backends: list[tuple[str, int]], mirror: str = "") -> dict:
    gateway_namespace, gateway = gateway_of(settings)
    return render_bundle_route(
        name=settings.service_name,
        namespace=settings.namespace,
        gateway=gateway,
        gateway_namespace=gateway_namespace,
        backends=backends,
        mirror=mirror,
    )


def shadow_judge(settings: DeploySettings, access: ClusterAccess, judge, judge_reliability: dict | None):
    """The shadow stage's decision function, or None without a shadow stage. Refused before anything is deployed
    when it could only fail: no judge, or one that did not pass its check (it would never vote)."""
    if settings.shadow_requests == 0:
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
            settings.request_log_url,
            live_bundle=live_bundle,
            candidate_bundle=candidate_bundle,
            since=since,
            want=settings.shadow_requests,
            timeout_s=settings.shadow_timeout_s,
            poll_s=access.shadow_poll_s,
        )
        return shadow_gate(pairs, judge, judge_reliability, margin=settings.shadow_margin)

    return decide


def deploy_bundle(
    deployment: Deployment,
    smoke_examples: list[dict],
    *,
    judge=None,
    judge_reliability: dict | None = None,
    access: ClusterAccess = ClusterAccess(),
) -> DeployResult:
    """``judge`` and ``judge_reliability`` (check_judge's verdict on it) serve the shadow stage."""
    d, settings, registry = deployment, deployment.settings, deployment.registry
    if settings.deploy_target not in DEPLOY_TARGETS:
        raise DeployError(
            f"unknown deploy target {settings.deploy_target!r}.",
            f"choose one of {list(DEPLOY_TARGETS)} ('none' renders and validates only).",
        )
    api = serving_api(settings)
    manifest = api.render(d)
    shadow = shadow_judge(settings, access, judge, judge_reliability) if settings.deploy_target == "kserve" else None
    refuse_if_cancelled(f"deploying bundle {d.bundle.short_id}")
    audit = {
        "bundle_id": d.bundle.id,
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
            prompt_name=d.prompt.name,
            prompt_version=registry.prompt_version,
            audit_log=registry.audit_log,
            audit=audit,
        )

    rollout: KServeRollout | LLMRollout | None = None
    outcome = None
    if settings.deploy_target == "kserve":
        if current_champion(client, registry.registered_model_name) != registry.expected_champion:
            promote()  # never roll out a bundle that cannot become the champion: this refuses before any call
        rollout, subject, served_name = api.rollout(d, manifest, access)
        outcome = rollout.run(
            subject,  # type: ignore[arg-type]  # each rollout takes its own API's objects
            canary_traffic_percent=settings.canary_traffic_percent,
            smoke=lambda url: smoke_test(
                url, served_name, smoke_examples, floor=settings.smoke_min_token_f1, bundle_id=d.bundle.id
            ),
            shadow=shadow,
        )
        _audit_rollout(registry.audit_log, audit, settings, outcome)
        if not outcome.rolled_out:
            _tag_deployment(client, registry, "rolled_back", outcome.reason)
            return DeployResult(
                "rolled_back", False, outcome.reason, manifest, outcome.as_dict(), events=outcome.events
            )
    previous = _promote_or_undo(promote, rollout, outcome, registry.audit_log, audit)
    if rollout is not None:
        rollout.finish()  # the previous bundle's objects go only once the registry says the candidate is live
    status = "rolled_out" if outcome else "rendered"
    _tag_deployment(client, registry, status)
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


def _audit_rollout(audit_log: str, audit: dict, settings: DeploySettings, outcome) -> None:
    shadow_keys = ("passed", "n", "reasons", "candidate_wins", "live_wins", "ties")
    append_audit(
        audit_log,
        {
            "event": "deployment",
            **audit,
            "status": outcome.status,
            "reason": outcome.reason,
            "service": f"{settings.namespace}/{settings.service_name}",
            "serving_api": settings.serving_api,
            **({"shadow": {key: outcome.shadow[key] for key in shadow_keys}} if outcome.shadow else {}),
        },
    )


def _tag_deployment(client, registry: PromotionTarget, status: str, reason: str = "") -> None:
    client.set_model_version_tag(registry.registered_model_name, registry.model_version, "champion.deployment", status)
    if reason:
        client.set_model_version_tag(
            registry.registered_model_name, registry.model_version, "champion.deployment_reason", reason[:4000]
        )


def _promote_or_undo(promote, rollout, outcome, audit_log: str, audit: dict) -> str | None:
    """Move the alias; if another promotion moved it meanwhile, undo this rollout (the other promotion owns the
    alias, and the cluster must serve what the registry says is live) and re-raise."""
    try:
        return promote()
    except ChampionMoved:
        if rollout is not None and outcome is not None:
            rollout.undo(outcome)
            append_audit(
                audit_log,
                {
                    "event": "deployment",
                    **audit,
                    "status": "rolled_back",
                    "reason": "the champion alias moved during the rollout",
                },
            )
        raise


def shadow_stage_judge(settings: DeploySettings, evaluator_config: str, weights_cache: str, cache_root: str):
    """The evaluator config's judge for the shadow stage, or None where there is no shadow stage (or no judge:
    ``shadow_judge`` then refuses before anything is deployed)."""
    if not (settings.shadow_requests and settings.deploy_target == "kserve"):
        return None
    config = load_evaluator_config(evaluator_config)
    return build_judge(config.judge, weights_cache, ExampleCache(cache_root)) if config.judge is not None else None


def deployment_output(result: DeployResult, settings: DeploySettings, *, manifest_uri: str, report_uri: str) -> dict:
    """The deploy step's ``deployment`` output: what happened, in a form the CLI and the run summary read."""
    shadow = (result.rollout or {}).get("shadow")
    return {
        "status": result.status,
        "promoted": result.promoted,
        "reason": result.reason,
        "target": settings.deploy_target,
        "serving_api": settings.serving_api,
        "shadow": {key: shadow[key] for key in ("passed", "n", "reasons")} if shadow else None,
        "manifest": manifest_uri,
        "report": report_uri,
    }


def served_object(manifest: dict) -> dict:
    """The object that carries the bundle's identity: the InferenceService, or the LLMInferenceService of a List."""
    return manifest["items"][0] if manifest.get("kind") == "List" else manifest


def deployment_report(result: DeployResult, settings: DeploySettings) -> str:
    served = served_object(result.manifest)
    meta = served["metadata"]
    where = (
        f"LLMInferenceService `{meta['namespace']}/{meta['name']}` behind its prompt router and the route "
        f"`{settings.service_name}` on gateway `{settings.llm_gateway}`"
        if served["kind"] == "LLMInferenceService"
        else f"InferenceService `{meta['namespace']}/{meta['name']}` ({settings.deployment_mode} mode)"
    )
    weights = (
        served["spec"]["model"]["uri"]
        if served["kind"] == "LLMInferenceService"
        else served["spec"]["predictor"]["model"]["storageUri"]
    )
    lines = [
        f"# Deployment: {result.status}",
        "",
        f"- {where}, target `{settings.deploy_target}`",
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
    if settings.deploy_target == "none":
        lines += [
            "",
            "Apply it to a cluster with `kubectl apply -f manifest.yaml`, or run the pipeline on Kubeflow with deploy_target=kserve.",
        ]
    return "\n".join(lines) + "\n"
