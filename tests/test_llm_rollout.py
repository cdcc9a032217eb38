"""The deploy step on KServe's LLM API (serving_api=llminferenceservice) against a real kube-apiserver + etcd.

Every call goes through the real ``kubernetes`` client as the deploy step's service account, bound to the Role
``champion manifests --serving-api llminferenceservice`` renders; the registry is a real MLflow (sqlite). The
bundles are served by the real prompt transformer (serving/transformer.py) in child processes in front of
scripted models, logging every request as CloudEvents to the real log sink (serving/log_sink.py); the shadow
gate's judge is the scripted OpenAI-compatible judge. The test plays what cannot run here
(tests/envtest/llm_controllers.py): KServe's LLMInferenceService controller, the Deployment controller and
the gateway, which reports on routes (ResolvedRefs false for a missing Service) and whose mirroring the test
performs: while the front route mirrors, each user request goes to the live router and, with the same
request id, to the candidate's. Not proven here: a real gateway's mirroring and llm-d's scheduling.
"""

from __future__ import annotations

import json
from typing import Callable

import pytest
import yaml

from champion.errors import DeployError
from serving.deploy import (
    Deployment,
    LLMInferenceServiceApi,
    PromotionTarget,
    deployment_report,
    front_route,
)
from serving.kube import DEPLOYMENT, HTTP_ROUTE, LLM_INFERENCE_SERVICE, SERVICE, api_client
from serving.llm_rollout import LLMRollout
from serving.llm_service import bundle_name, route_backends, router_service
from serving.log_sink import RequestLogSink
from serving.manifests import render_rbac
from serving.smoke import SmokeResult
from tests.envtest.llm_controllers import LLMStackStandIn
from tests.shadow_traffic import SMOKE, Users
from tests.shadow_traffic import serve as serve_bundle
from tests.test_deploy import PROMPT, Registry, Rollout, _rollout, deploy, render
from tests.test_shadow import Served

GATEWAY = "kserve-ingress-gateway"
SHADOW_REQUESTS = 20


class LLMCluster:
    def __init__(self, server, namespace: str, tmp_path, standin: LLMStackStandIn) -> None:
        self.server, self.namespace, self.standin = server, namespace, standin
        server.apply(render_rbac(namespace, serving_api="llminferenceservice"))
        token = server.service_account_token(namespace, "pipeline-runner")
        self.kubeconfig_path = server.kubeconfig(tmp_path / "kubeconfig", token, namespace)

    def get(self, kind, name: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.server.admin.call_api(
                kind.path(self.namespace, name),
                "GET",
                header_params={"Accept": "application/json"},
                response_type="object",
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def bundle_objects(self, name: str) -> list[dict | None]:
        return [
            self.get(LLM_INFERENCE_SERVICE, name),
            self.get(DEPLOYMENT, router_service(name)),
            self.get(SERVICE, router_service(name)),
        ]


@pytest.fixture
def registry(tmp_path):
    return Registry(tmp_path)


@pytest.fixture
def llm_cluster(kube_server, kube_namespace, tmp_path):
    with LLMStackStandIn(kube_server.admin, kube_namespace, gateway=GATEWAY) as standin:
        yield LLMCluster(kube_server, kube_namespace, tmp_path, standin)
    assert not standin.errors, standin.errors  # every status the stand-in wrote passed the server's validation


@pytest.fixture
def sink(tmp_path):
    with RequestLogSink(tmp_path / "cluster-requests.jsonl") as running:
        yield running


def options(cluster: LLMCluster, router_url: str, **overrides) -> Rollout:
    values = dict(
        service_name="qa",
        namespace=cluster.namespace,
        deploy_target="kserve",
        serving_api="llminferenceservice",
        llm_gateway=f"kserve/{GATEWAY}",
        kubeconfig=cluster.kubeconfig_path,
        ready_timeout_s=10.0,
        poll_s=0.02,
        smoke_min_token_f1=0.5,
        transformer_image="registry.example.com/champion@sha256:" + "f" * 64,
        storage_uri="s3://models/{model_digest}",
        router_url=router_url,
        shadow_poll_s=0.2,
    )
    return _rollout({**values, **overrides})


def serve(bundle, right: bool, tmp_path, sink) -> Served:
    """The bundle's real prompt router under its own model name on the LLM API."""
    return serve_bundle(bundle, right, tmp_path, sink, bundle_name("qa", bundle))


def mirrors(cluster: LLMCluster) -> Callable[[], bool]:
    def mirroring() -> bool:
        route = cluster.get(HTTP_ROUTE, "qa")
        filters = (route["spec"]["rules"][0].get("filters") or []) if route else []
        return any(f["type"] == "RequestMirror" for f in filters)

    return mirroring


def install_champion(cluster: LLMCluster, registry: Registry, live: Served) -> str:
    """The champion bundle as an earlier run left it: its objects and the front route serving it alone."""
    service = options(cluster, live.url)
    objects = LLMInferenceServiceApi().objects(
        Deployment(
            registry.champion,
            PROMPT,
            service.settings,
            PromotionTarget(registry.uri, "qa", registry.champion_version, 1, None),
        )
    )
    rollout = LLMRollout(
        api_client(cluster.kubeconfig_path),
        cluster.namespace,
        route_name="qa",
        gateway=GATEWAY,
        render_route=lambda backends, mirror: front_route(service.settings, backends, mirror),
        router_url=lambda name: live.url,
        ready_timeout_s=10.0,
        poll_s=0.02,
    )
    outcome = rollout.run(objects, canary_traffic_percent=100, smoke=lambda url: SmokeResult(url, True, "installed"))
    assert outcome.rolled_out, outcome.reason
    cluster.standin.routes.clear()
    return objects.name


def test_a_first_deployment_creates_the_bundles_objects_and_the_route(llm_cluster, registry, tmp_path, sink):
    candidate = serve(registry.challenger, True, tmp_path, sink)
    try:
        target = registry.target()
        # A champion exists in MLflow but nothing serves on the cluster yet: the route is created.
        result = deploy(
            registry.challenger,
            PROMPT,
            options(llm_cluster, candidate.url),
            target,
            [{"question": q, "reference": a} for q, a in SMOKE],
        )
    finally:
        candidate.close()
    assert result.promoted and result.status == "rolled_out", result.reason
    name = bundle_name("qa", registry.challenger)
    llm, deployment, service = llm_cluster.bundle_objects(name)
    assert llm["metadata"]["annotations"]["champion.io/bundle-id"] == registry.challenger.id
    assert llm["spec"]["model"]["uri"] == f"s3://models/{registry.challenger.model_digest}"
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["args"][2]
        == f"--predictor_route_prefix=/{llm_cluster.namespace}/{name}"
    )
    assert service is not None
    assert route_backends(llm_cluster.get(HTTP_ROUTE, "qa")) == {name: 100}
    assert result.rollout["smoke"]["mean_token_f1"] == 1.0  # through the real prompt router
    assert [e["step"] for e in result.events] == ["created", "ready", "smoke_test", "traffic_100"]
    assert registry.live() == registry.registration.model_version
    report = deployment_report(result, options(llm_cluster, candidate.url).settings)
    assert "LLMInferenceService" in report and f"kserve/{GATEWAY}" in report


@pytest.mark.parametrize("right", [True, False], ids=["equivalent-candidate", "degraded-candidate"])
def test_the_shadow_stage_gates_on_mirrored_traffic_before_any_user_reaches_the_candidate(
    llm_cluster, registry, tmp_path, sink, shadow_judge, right
):
    live = serve(registry.champion, True, tmp_path, sink)
    candidate = serve(registry.challenger, right, tmp_path, sink)
    try:
        live_name = install_champion(llm_cluster, registry, live)
        before = llm_cluster.get(HTTP_ROUTE, "qa")
        service = options(
            llm_cluster,
            candidate.url,
            canary_traffic_percent=10,
            shadow_requests=SHADOW_REQUESTS,
            shadow_timeout_s=60.0,
            request_log_url=sink.url,
            log_content=True,
        )
        examples = [{"question": q, "reference": a} for q, a in SMOKE]
        with Users(mirrors(llm_cluster), live, candidate) as users:
            result = deploy(
                registry.challenger,
                PROMPT,
                service,
                registry.target(),
                examples,
                judge=shadow_judge[0],
                judge_reliability=shadow_judge[1],
            )
    finally:
        live.close()
        candidate.close()
    name = bundle_name("qa", registry.challenger)
    shadow = result.rollout["shadow"]
    assert shadow["n"] == SHADOW_REQUESTS and users.mirrored >= SHADOW_REQUESTS
    routes = [route_backends({"spec": seen["spec"]}) for seen in llm_cluster.standin.routes]
    mirrored = llm_cluster.standin.routes[0]["spec"]["rules"][0]["filters"][-1]
    assert routes[0] == {live_name: 100} and mirrored["requestMirror"]["backendRef"]["name"] == router_service(name)
    audit = [json.loads(line) for line in open(registry.audit_log)]
    deployment = next(event for event in audit if event["event"] == "deployment")
    assert deployment["shadow"]["n"] == SHADOW_REQUESTS and deployment["serving_api"] == "llminferenceservice"
    if right:  # the same answers: ties, inside the margin; then the canary split, then 100%
        assert shadow["passed"] and shadow["ties"] == SHADOW_REQUESTS, shadow["reasons"]
        assert routes[1:] == [{live_name: 90, name: 10}, {name: 100}]
        assert result.promoted and registry.live() == registry.registration.model_version
        assert [e["step"] for e in result.events] == [
            "created",
            "ready",
            "smoke_test",
            "shadow_started",
            "shadow_gate",
            "canary",
            "traffic_100",
            "retired",
        ]
        assert llm_cluster.bundle_objects(live_name) == [None, None, None]  # the old bundle's GPUs are freed
    else:  # the candidate does not know: the live answers win; users never reached it, nothing moved
        assert not shadow["passed"] and shadow["live_wins"] >= SHADOW_REQUESTS // 2
        assert not result.promoted and result.status == "rolled_back" and "shadow gate did not pass" in result.reason
        assert llm_cluster.get(HTTP_ROUTE, "qa")["spec"] == before["spec"]  # the previous route, byte for byte
        assert all(obj is None for obj in llm_cluster.bundle_objects(name))
        assert all(obj is not None for obj in llm_cluster.bundle_objects(live_name))
        assert registry.live() == registry.champion_version
        assert "Shadow gate: not passed" in deployment_report(result, service.settings)


def test_a_candidate_that_never_becomes_ready_is_deleted_and_the_route_never_changes(
    llm_cluster, registry, tmp_path, sink
):
    live = serve(registry.champion, True, tmp_path, sink)
    try:
        live_name = install_champion(llm_cluster, registry, live)
        llm_cluster.standin.never_ready_if = lambda obj: obj["metadata"]["name"] != live_name
        result = deploy(
            registry.challenger, PROMPT, options(llm_cluster, live.url, ready_timeout_s=1.0), registry.target(), []
        )
    finally:
        live.close()
    assert not result.promoted and "CrashLoopBackOff" in result.reason and "users never reached it" in result.reason
    assert llm_cluster.standin.routes == []  # not one write to the route
    assert all(obj is None for obj in llm_cluster.bundle_objects(bundle_name("qa", registry.challenger)))
    assert registry.live() == registry.champion_version


def test_the_inferenceservice_role_may_not_deploy_on_the_llm_api(llm_cluster, registry, tmp_path):
    llm_cluster.server.apply(render_rbac(llm_cluster.namespace))  # the classic Role: inferenceservices only
    with pytest.raises(DeployError, match="llminferenceservices") as info:
        deploy(registry.challenger, PROMPT, options(llm_cluster, "http://127.0.0.1:9"), registry.target(), [])
    assert "--serving-api llminferenceservice" in info.value.fix
    assert registry.live() == registry.champion_version


def test_a_shadow_stage_without_a_reliable_judge_is_refused_before_anything_is_deployed(llm_cluster, registry):
    service = options(
        llm_cluster, "http://127.0.0.1:9", shadow_requests=20, request_log_url="http://127.0.0.1:9", log_content=True
    )
    with pytest.raises(DeployError, match="did not pass its check"):
        deploy(
            registry.challenger,
            PROMPT,
            service,
            registry.target(),
            [],
            judge=object(),
            judge_reliability={"reliable": False, "reasons": ["position bias 0.4 < 0.9"]},
        )
    assert llm_cluster.get(HTTP_ROUTE, "qa") is None and llm_cluster.standin.routes == []


def test_the_rendered_list_is_what_kubectl_applies(llm_cluster, registry):

    manifest = render(registry.challenger, PROMPT, options(llm_cluster, ""), registry.target())
    assert [item["kind"] for item in manifest["items"]] == ["LLMInferenceService", "Deployment", "Service", "HTTPRoute"]
    llm_cluster.server.apply(manifest["items"], dry_run=True)  # the real server accepts every object
    assert yaml.safe_load(yaml.safe_dump(manifest)) == manifest


def test_if_another_promotion_moves_the_alias_mid_rollout_users_stay_on_the_live_bundle(
    llm_cluster, registry, tmp_path, sink
):
    from registry.registry import ChampionMoved

    live = serve(registry.champion, True, tmp_path, sink)
    candidate = serve(registry.challenger, True, tmp_path, sink)
    rival, rival_promotes = registry.rival_promotion()  # wins the alias during the smoke test

    candidate.predictor.on_request = rival_promotes
    try:
        live_name = install_champion(llm_cluster, registry, live)
        before = llm_cluster.get(HTTP_ROUTE, "qa")
        with pytest.raises(ChampionMoved):
            deploy(
                registry.challenger,
                PROMPT,
                options(llm_cluster, candidate.url, canary_traffic_percent=50),
                registry.target(),
                [{"question": q, "reference": a} for q, a in SMOKE],
            )
    finally:
        live.close()
        candidate.close()
    assert registry.live() == rival.model_version
    assert llm_cluster.get(HTTP_ROUTE, "qa")["spec"] == before["spec"]  # users back on the bundle that served
    assert all(obj is None for obj in llm_cluster.bundle_objects(bundle_name("qa", registry.challenger)))
    assert all(obj is not None for obj in llm_cluster.bundle_objects(live_name))
    assert registry.events()[-2:] == ["alias_refused", "deployment"]
