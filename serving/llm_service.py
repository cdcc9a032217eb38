"""The LLM API path: a bundle served by KServe's ``LLMInferenceService`` (v1alpha2, llm-d underneath).

What is rendered, and why:

- **LLMInferenceService** for the bundle's weights: ``model.uri``/``name``, fixed ``replicas`` or
  ``scaling`` (min/max, KEDA or HPA through llm-d's workload variant autoscaler), the GPU resources of the
  ``main`` container, a controller-managed route and gateway, llm-d's scheduler, and the bundle's identity
  as labels and annotations.
- **The prompt router**: llm-d serves raw chat completions and has no place for a prompt *template* (a
  system message, a rendering of the user's question, fixed decoding). So the bundle's prompt travels as
  it does on the InferenceService path: champion's prompt transformer (``serving/transformer.py``, the same
  code ``champion serve`` runs) as a Deployment + Service in front of the LLMInferenceService's route
  (``/<namespace>/<name>/v1/chat/completions`` on the gateway). The prompt is in its environment with the
  bundle's digest, and the transformer refuses to start when they differ: the served prompt is the
  evaluated one, checked at every start.
- **Route groups**: LLMInferenceServices in one ``router.route.group`` with proportional ``weight``s (KServe
  0.20+) split traffic between models behind one prompt; rendered and validated for model-only canaries, but
  champion's rollout splits at the prompt routers (a bundle is a model *and* a prompt).
- **The route clients call** (``render_bundle_route``): a Gateway API ``HTTPRoute`` over the bundles'
  prompt routers. The shadow stage mirrors every request to the candidate's (``RequestMirror``, answers
  discarded); the canary splits by weight between the live and the candidate's prompt router.

Every object is held to its CRD schema strictly (unknown keys are errors), and to the KServe webhook's
rules that a v1.20 API server (no CEL) and a JSON-schema check cannot see: replicas xor scaling, group and
weight together, one autoscaler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from champion.bundle import Bundle
from champion.errors import ManifestError
from prompts import PromptTemplate
from serving.manifests import _check_name, bundle_metadata, check_namespace, transformer_env, validate_strict
from serving.openai_api import MODELS_ROUTE

LLM_API = "serving.kserve.io/v1alpha2"
PROMPT_ROUTER_PORT = 8080
ROUTER_SUFFIX = "-prompt-router"


@dataclass(frozen=True)
class Scaling:
    """Autoscaling of an LLMInferenceService: ``replicas`` fixed when min == max, else llm-d's workload variant
    autoscaler driving KEDA (scales to the metric llm-d exports) or an HPA."""

    min_replicas: int = 1
    max_replicas: int = 1
    autoscaler: Literal["keda", "hpa"] = "keda"

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ManifestError(
                f"replicas must satisfy 1 <= min ({self.min_replicas}) <= max ({self.max_replicas}).",
                "set min_replicas and max_replicas so that min is at least 1 and at most max.",
            )
        if self.autoscaler not in ("keda", "hpa"):
            raise ManifestError(f"unknown autoscaler {self.autoscaler!r}.", "choose keda or hpa.")

    def render(self) -> dict:
        if self.min_replicas == self.max_replicas:
            return {"replicas": self.min_replicas}
        return {
            "scaling": {
                "minReplicas": self.min_replicas,
                "maxReplicas": self.max_replicas,
                "wva": {self.autoscaler: {}},
            }
        }


def render_llm_inference_service(
    bundle: Bundle,
    *,
    name: str,
    namespace: str,
    model_uri: str,
    model_version: str,
    registered_model_name: str,
    gpus: int = 1,
    scaling: Scaling = Scaling(),
    group: str = "",
    weight: int | None = None,
    pipeline_run: str = "",
) -> dict:
    _check_name(name, "service name")
    check_namespace(namespace)
    if "://" not in model_uri:
        raise ManifestError(
            f"model URI {model_uri!r} is not a URI.", "pass where the weights live: hf://, s3://, pvc:// or oci://."
        )
    labels, annotations = bundle_metadata(
        bundle, model_version=model_version, registered_model_name=registered_model_name, pipeline_run=pipeline_run
    )
    resources = {"cpu": "4", "memory": "32Gi"} | ({"nvidia.com/gpu": str(gpus)} if gpus else {})
    route: dict = {}
    if group or weight is not None:
        route = {"group": group, "weight": weight}
    manifest = {
        "apiVersion": LLM_API,
        "kind": "LLMInferenceService",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": {
            "model": {"uri": model_uri, "name": name},
            **scaling.render(),
            "router": {"gateway": {}, "route": route, "scheduler": {}},
            "template": {
                "containers": [{"name": "main", "resources": {"requests": dict(resources), "limits": dict(resources)}}]
            },
            "labels": {"champion.io/bundle": bundle.short_id},
        },
    }
    validate_llm(manifest)
    return manifest


def render_prompt_router(
    bundle: Bundle,
    prompt: PromptTemplate,
    *,
    name: str,
    namespace: str,
    image: str,
    gateway_host: str,
    model_version: str,
    registered_model_name: str,
    use_ssl: bool = True,
    request_log_url: str = "",
    log_content: bool = False,
) -> list[dict]:
    """The prompt transformer as a Deployment + Service in front of the LLMInferenceService ``name``."""
    _check_name(name, "service name")
    check_namespace(namespace)
    if prompt.ref != bundle.prompt:
        raise ManifestError(
            f"prompt {prompt.name}@{prompt.version} (digest {prompt.digest[:12]}) is not the bundle's prompt ({bundle.prompt.digest[:12]}).",
            "deploy with the prompt the bundle was evaluated with.",
        )
    if not image:
        raise ManifestError("no image was given for the prompt router.", "pass the champion CPU image.")
    if not gateway_host:
        raise ManifestError(
            "no gateway host for the LLM API route.",
            "pass the in-cluster address of the Gateway that serves LLMInferenceServices (gateway_host).",
        )
    labels, annotations = bundle_metadata(
        bundle, model_version=model_version, registered_model_name=registered_model_name
    )
    selector = {"app.kubernetes.io/name": router_service(name)}
    container = {
        "name": "prompt-router",
        "image": image,
        "command": ["python", "-m", "serving.transformer"],
        "args": [
            f"--model_name={name}",
            f"--predictor_host={gateway_host}",
            f"--predictor_route_prefix=/{namespace}/{name}",
            *(["--predictor_use_ssl"] if use_ssl else []),
            "--host=0.0.0.0",
            f"--http_port={PROMPT_ROUTER_PORT}",
        ],
        "env": transformer_env(bundle, prompt, request_log_url=request_log_url, log_content=log_content),
        # protocol is the default, written out: server-side apply keys these lists on (port, protocol).
        "ports": [{"name": "http", "containerPort": PROMPT_ROUTER_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": MODELS_ROUTE, "port": PROMPT_ROUTER_PORT}},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
    }
    meta = {"namespace": namespace, "labels": labels | selector, "annotations": annotations}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": router_service(name), **meta},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": labels | selector}, "spec": {"containers": [container]}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": router_service(name), **meta},
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": PROMPT_ROUTER_PORT, "protocol": "TCP"}],
            },
        },
    ]


def bundle_name(service: str, bundle: Bundle) -> str:
    """The bundle's own objects on the LLM API path: ``<service>-<first 8 of the bundle id>`` (the live one and a
    candidate exist side by side during a shadow or canary)."""
    name = f"{service}-{bundle.id[:8]}"
    _check_name(name, "service name", max_length=63 - len(ROUTER_SUFFIX))
    return name


def router_service(name: str) -> str:
    return f"{name}{ROUTER_SUFFIX}"


def render_bundle_route(
    *,
    name: str,
    namespace: str,
    gateway: str,
    gateway_namespace: str,
    backends: Sequence[tuple[str, int]],
    mirror: str = "",
    hostname: str = "",
) -> dict:
    """The route clients call, ``/<namespace>/<name>/…`` on ``gateway``: the bundles' prompt routers by weight
    (``backends``: (bundle object name, weight)), and every request mirrored to ``mirror``'s router when given
    (Gateway API RequestMirror: the gateway discards the mirror's answers; champion reads them from the
    request log). The prefix is rewritten to ``/``, where the prompt router serves its OpenAI routes.

    Traffic is split here, between prompt routers, and not with the LLMInferenceServices' ``router.route.group``:
    a group split happens behind the prompt, so the live prompt would reach the candidate's model."""
    _check_name(name, "route name", max_length=63)
    check_namespace(namespace)
    if not backends or any(weight < 0 for _, weight in backends) or sum(w for _, w in backends) <= 0:
        raise ManifestError(
            f"the route {name!r} needs at least one backend and weights >= 0 with a positive sum, got {list(backends)}.",
            "pass (bundle name, weight) pairs, e.g. [(live, 90), (candidate, 10)].",
        )
    if mirror and mirror in {backend for backend, _ in backends}:
        raise ManifestError(
            f"{mirror!r} would be mirrored and served at once.", "mirror only a candidate that takes no traffic."
        )
    filters: list[dict] = [
        {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}
    ]
    if mirror:
        filters.append(
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": router_service(mirror), "port": 80}}}
        )
    route: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "champion", "champion.io/stage": "shadow" if mirror else "live"},
        },
        "spec": {
            "parentRefs": [{"name": gateway, "namespace": gateway_namespace}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": f"/{namespace}/{name}"}}],
                    "filters": filters,
                    "backendRefs": [
                        {"name": router_service(backend), "port": 80, "weight": weight} for backend, weight in backends
                    ],
                }
            ],
        },
    }
    if hostname:
        route["spec"]["hostnames"] = [hostname]
    validate_strict(route)
    return route


def route_backends(route: dict) -> dict[str, int]:
    """The bundle object names a route serves, with their weights (the router Service's suffix removed)."""
    refs = route["spec"]["rules"][0].get("backendRefs") or []
    return {ref["name"].removesuffix(ROUTER_SUFFIX): int(ref.get("weight", 1)) for ref in refs}


def render_istio_mirror(
    *, name: str, namespace: str, hosts: list[str], live_host: str, shadow_host: str, gateways: tuple[str, ...] = ()
) -> dict:
    """The classic path's shadow: an Istio VirtualService that routes ``hosts`` to the live transformer and
    mirrors every request to the shadow one (answers discarded; champion reads the shadow's request log)."""
    _check_name(name, "route name", max_length=63)
    check_namespace(namespace)
    if not hosts or not live_host or not shadow_host or live_host == shadow_host:
        raise ManifestError(
            "a mirror needs the hosts clients use, a live and a different shadow destination.",
            "pass hosts, live_host and shadow_host (service hostnames).",
        )
    spec: dict = {
        "hosts": list(hosts),
        "http": [
            {
                "route": [{"destination": {"host": live_host}, "weight": 100}],
                "mirror": {"host": shadow_host},
                "mirrorPercentage": {"value": 100.0},
            }
        ],
    }
    if gateways:
        spec["gateways"] = list(gateways)
    route: dict[str, Any] = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "champion", "champion.io/stage": "shadow"},
        },
        "spec": spec,
    }
    validate_strict(route)
    return route


def validate_llm(manifest: dict) -> None:
    """The CRD schema strictly, then the KServe webhook's rules that neither v1.20 nor a JSON schema enforces."""
    validate_strict(manifest)
    spec = manifest["spec"]
    problems = []
    if "replicas" in spec and "scaling" in spec:
        problems.append("replicas and scaling are mutually exclusive")
    wva = (spec.get("scaling") or {}).get("wva")
    if wva is not None and ("hpa" in wva) == ("keda" in wva):
        problems.append("scaling.wva needs exactly one of hpa or keda")
    route = (spec.get("router") or {}).get("route") or {}
    if ("group" in route) != ("weight" in route):
        problems.append("router.route.group and router.route.weight go together")
    if ("group" in route or "weight" in route) and (spec.get("router") or {}).get("ingress") is not None:
        problems.append("traffic splitting needs Gateway API routing, not ingress")
    if problems:
        raise ManifestError(
            f"the LLMInferenceService {manifest['metadata']['name']!r} breaks KServe's rules: "
            + "; ".join(problems)
            + ".",
            "fix the fields named (KServe's webhook would refuse it).",
        )
