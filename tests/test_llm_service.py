"""The LLM API path (KServe LLMInferenceService, llm-d): rendering held to the CRD and KServe's webhook rules,
accepted by the real API server, and the prompt router proven to serve the evaluated prompt."""

import os
import subprocess
import sys

import pytest
import requests

from champion.errors import ManifestError, PromptError
from prompts import load_prompt
from serving.llm_service import (
    Scaling,
    render_bundle_route,
    render_istio_mirror,
    render_llm_inference_service,
    render_prompt_router,
    route_backends,
    validate_llm,
)
from tests.answer_server import AnswerServer
from tests.test_deploy import make_bundle

PROMPT = load_prompt("qa-concise")
STABLE, CANDIDATE = make_bundle("a" * 64), make_bundle("b" * 64)
IMAGE = "registry.example.com/champion@sha256:" + "f" * 64


def service(bundle=CANDIDATE, namespace="team-a", name="qa", **overrides):
    options = dict(
        name=name,
        namespace=namespace,
        model_uri=f"s3://models/{bundle.model_digest}",
        model_version="2",
        registered_model_name="qa",
    )
    return render_llm_inference_service(bundle, **{**options, **overrides})


def router(bundle=CANDIDATE, namespace="team-a", name="qa", gateway_host="gw.kserve.svc", use_ssl=True):
    return render_prompt_router(
        bundle,
        PROMPT,
        name=name,
        namespace=namespace,
        image=IMAGE,
        gateway_host=gateway_host,
        model_version="2",
        registered_model_name="qa",
        use_ssl=use_ssl,
    )


def llm_objects(namespace: str) -> list[dict]:
    """Single node, a canary pair in one route group, both prompt routers, and the shadow route."""
    stable_weight, candidate_weight = 90, 10  # a 10% canary, as Gateway API backendRef weights
    return [
        service(STABLE, namespace, "qa", group="qa", weight=stable_weight),
        service(CANDIDATE, namespace, "qa-candidate", group="qa", weight=candidate_weight, scaling=Scaling(1, 4)),
        service(CANDIDATE, namespace, "qa-single", scaling=Scaling(2, 2, "hpa")),
        *router(STABLE, namespace, "qa"),
        *router(CANDIDATE, namespace, "qa-candidate"),
        render_bundle_route(
            name="qa-front",
            namespace=namespace,
            gateway="kserve-ingress-gateway",
            gateway_namespace=namespace,
            backends=[("qa", 100)],
            mirror="qa-candidate",
        ),
        # The classic (InferenceService) path's shadow: an Istio mirror between two transformers.
        render_istio_mirror(
            name="qa-classic-shadow",
            namespace=namespace,
            hosts=["qa.example.com"],
            live_host=f"qa-transformer.{namespace}.svc.cluster.local",
            shadow_host=f"qa-shadow-transformer.{namespace}.svc.cluster.local",
            gateways=["knative-serving/knative-ingress-gateway"],
        ),
    ]


def test_single_node_canary_pair_and_shadow_route_are_held_to_the_crds():
    single, canary = service(), service(group="qa", weight=10, scaling=Scaling(1, 4))
    assert single["spec"]["replicas"] == 1 and "scaling" not in single["spec"]
    assert canary["spec"]["router"]["route"] == {"group": "qa", "weight": 10}
    assert canary["spec"]["scaling"] == {"minReplicas": 1, "maxReplicas": 4, "wva": {"keda": {}}}
    assert canary["spec"]["template"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert canary["metadata"]["annotations"]["champion.io/bundle-id"] == CANDIDATE.id
    shadow = llm_objects("team-a")[-2]
    rewrite, mirror = shadow["spec"]["rules"][0]["filters"]
    assert rewrite["urlRewrite"]["path"] == {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
    assert mirror == {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": "qa-candidate-prompt-router", "port": 80}},
    }
    assert shadow["spec"]["rules"][0]["backendRefs"] == [{"name": "qa-prompt-router", "port": 80, "weight": 100}]
    assert route_backends(shadow) == {"qa": 100}
    canary = render_bundle_route(
        name="qa", namespace="team-a", gateway="gw", gateway_namespace="kserve", backends=[("qa-a", 90), ("qa-b", 10)]
    )
    assert route_backends(canary) == {"qa-a": 90, "qa-b": 10} and len(canary["spec"]["rules"][0]["filters"]) == 1
    classic = llm_objects("team-a")[-1]["spec"]["http"][0]
    assert classic["mirror"] == {"host": "qa-shadow-transformer.team-a.svc.cluster.local"}
    assert classic["mirrorPercentage"] == {"value": 100.0}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: m["spec"]["model"].update(url="s3://typo"), "model: Additional properties are not allowed \\('url'"),
        (
            lambda m: m["spec"].update(scaling={"minReplicas": 1, "maxReplicas": 2, "wva": {"keda": {}}}),
            "replicas and scaling are mutually exclusive",
        ),
        (lambda m: m["spec"]["router"].update(route={"group": "qa"}), "group and router.route.weight go together"),
        (
            lambda m: m["spec"]["router"].update(route={"group": "qa", "weight": 2_000_000}),
            "weight: 2000000 is greater than",
        ),
        (
            lambda m: (
                m["spec"].pop("replicas")
                and m["spec"].update(scaling={"minReplicas": 1, "maxReplicas": 2, "wva": {"hpa": {}, "keda": {}}})
            ),
            "exactly one of hpa or keda",
        ),
    ],
)
def test_unknown_fields_and_broken_webhook_rules_are_errors(mutate, message):
    manifest = service()
    mutate(manifest)
    with pytest.raises(ManifestError, match=message):
        validate_llm(manifest)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Scaling(3, 2), "min \\(3\\) <= max \\(2\\)"),
        (
            lambda: render_istio_mirror(name="m", namespace="team-a", hosts=["h"], live_host="a", shadow_host="a"),
            "a different shadow",
        ),
        (lambda: service(model_uri="models/qa"), "not a URI"),
        (
            lambda: render_bundle_route(
                name="qa", namespace="team-a", gateway="gw", gateway_namespace="gw", backends=[("a", 0)]
            ),
            "positive sum",
        ),
        (
            lambda: render_bundle_route(
                name="qa", namespace="team-a", gateway="gw", gateway_namespace="gw", backends=[("a", 1)], mirror="a"
            ),
            "mirrored and served at once",
        ),
        (lambda: router(gateway_host=""), "gateway host"),
        (
            lambda: render_prompt_router(
                CANDIDATE,
                load_prompt("qa-oneline"),
                name="qa",
                namespace="team-a",
                image=IMAGE,
                gateway_host="gw",
                model_version="2",
                registered_model_name="qa",
            ),
            "not the bundle's prompt",
        ),
    ],
)
def test_bad_parameters_are_clear_errors(call, message):
    with pytest.raises(ManifestError, match=message):
        call()


def test_every_llm_api_object_is_accepted_by_a_real_api_server(kube_server, kube_namespace):
    from tests.test_manifests import _contained

    objects = llm_objects(kube_namespace)
    dry = kube_server.apply(objects, dry_run=True)
    assert all(_contained(sent, answer) for sent, answer in zip(objects, dry))
    kube_server.apply(objects)
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(kube_server.admin)
    for sent in objects:
        resource = dynamic.resources.get(api_version=sent["apiVersion"], kind=sent["kind"])
        stored = resource.get(name=sent["metadata"]["name"], namespace=kube_namespace).to_dict()
        assert _contained(sent, stored), f"{sent['kind']} {sent['metadata']['name']} was changed or pruned"


def test_the_prompt_router_serves_exactly_the_evaluated_prompt_on_the_llm_route(tmp_path):
    """Run the rendered Deployment's container command (its args and environment) against a scripted llm-d
    route, and see the bundle's prompt and decoding arrive at /<namespace>/<name>/v1/chat/completions."""
    from tests.conftest import free_port
    from tests.test_serving import stop, wait_until_ready

    upstream = AnswerServer({}, bundle_id=CANDIDATE.id, path="/team-a/qa/v1/chat/completions")
    deployment = router(gateway_host=upstream.url.removeprefix("http://"), use_ssl=False)[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    port = free_port()
    args = [a for a in container["args"] if not a.startswith(("--host=", "--http_port="))]
    env = {**os.environ, **{item["name"]: item["value"] for item in container["env"]}}
    process = subprocess.Popen(
        [sys.executable, *container["command"][1:], *args, "--host=127.0.0.1", f"--http_port={port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/v1/models/qa", process, timeout_s=60)
        response = requests.post(
            f"http://127.0.0.1:{port}/openai/v1/chat/completions",
            json={
                "model": "qa",
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "temperature": 1.5,
            },
            timeout=60,
        )
    finally:
        stop(process)
        upstream.close()
    assert response.status_code == 200, response.text
    forwarded = upstream.requests[-1]
    assert forwarded["path"] == "/team-a/qa/v1/chat/completions"
    assert forwarded["body"]["messages"] == PROMPT.render(question="What is the capital of France?")
    assert forwarded["body"]["temperature"] == PROMPT.decoding.temperature
    assert response.headers["x-champion-bundle"] == CANDIDATE.id


def test_the_prompt_router_refuses_to_start_with_a_prompt_that_is_not_the_bundles():
    from serving.transformer import prompt_from_env

    container = router()[0]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert prompt_from_env(env) == PROMPT
    tampered = env | {"CHAMPION_PROMPT": load_prompt("qa-oneline").model_dump_json()}
    with pytest.raises(PromptError, match="digest"):
        prompt_from_env(tampered)
