"""The deploy step against a real kube-apiserver + etcd (tests/envtest/) with KServe's CRDs installed.

The real ``kubernetes`` client makes every call, authenticated as a service account (a TokenRequest token)
bound to exactly the Role and RoleBinding that ``champion manifests`` writes; the registry is a real MLflow
(sqlite). Smoke tests go over HTTP to scripted models on 127.0.0.1. The test plays KServe's controller
(tests/envtest/kserve_controller.py): it writes each new generation's status through the status
subresource, Ready unless the test says the revision crash-loops. What this does not prove: what a real
KServe controller and Knative do with the objects (traffic splitting, pods, probes, webhook-only rules).
"""

import copy
import json
from typing import NamedTuple

import pytest

from champion.bundle import Bundle
from champion.errors import ConfigError, DeployError
from champion.parameters import DeploySettings, parse
from prompts import load_prompt
from registry.register import register_bundle
from registry.registry import ChampionMoved, current_champion, promote_version
from serving.deploy import ClusterAccess, Deployment, PromotionTarget, deploy_bundle, deployment_report, serving_api
from serving.manifests import render_rbac
from serving.rollout import GROUP, PLURAL, VERSION, KServeRollout, kube_api
from tests.answer_server import AnswerServer
from tests.envtest.faults import OverloadedFront
from tests.envtest.kserve_controller import KServeControllerStandIn

PROMPT = load_prompt("qa-concise")
EXAMPLES = [
    {"id": "1", "question": "What is the capital of France?", "reference": "Paris"},
    {"id": "2", "question": "What is the capital of Japan?", "reference": "Tokyo"},
    {"id": "3", "question": "How many legs does a spider have?", "reference": "eight"},
]
GOOD = {e["question"]: f"{e['reference']}." for e in EXAMPLES}


class Rollout(NamedTuple):
    """A test's deploy settings and how it reaches its cluster (short waits, routers on 127.0.0.1)."""

    settings: DeploySettings
    access: ClusterAccess


def _rollout(values: dict) -> Rollout:
    access = {key: values.pop(key) for key in list(values) if key in ClusterAccess.__dataclass_fields__}
    return Rollout(DeploySettings(**values), ClusterAccess(**access))


def deploy(bundle, prompt, rollout: Rollout, target, examples, **kwargs):
    return deploy_bundle(
        Deployment(bundle, prompt, rollout.settings, target), examples, access=rollout.access, **kwargs
    )


def render(bundle, prompt, rollout: Rollout, target) -> dict:
    return serving_api(rollout.settings).render(Deployment(bundle, prompt, rollout.settings, target))


def make_bundle(model_digest: str) -> Bundle:
    return Bundle(
        model_digest=model_digest,
        prompt=PROMPT.ref,
        decoding=PROMPT.decoding.model_dump(mode="json"),
        dataset_digest="d" * 64,
        evaluator_digest="e" * 64,
    )


class Registry:
    """A real sqlite MLflow with champion v1 live and challenger v2 approved by the gate."""

    def __init__(self, tmp_path) -> None:
        self.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        self.audit_log = str(tmp_path / "audit.jsonl")
        self.champion = make_bundle("a" * 64)
        self.challenger = make_bundle("b" * 64)
        first = self.register(self.champion, None)
        promote_version(
            self.uri,
            "qa",
            first.model_version,
            expected=None,
            prompt_name=PROMPT.name,
            prompt_version=first.prompt_version,
            audit_log=self.audit_log,
        )
        self.champion_version = first.model_version
        self.registration = self.register(self.challenger, first.model_version)

    def register(self, bundle, expected):
        return register_bundle(
            tracking_uri=self.uri,
            registered_model_name="qa",
            bundle=bundle,
            prompt=PROMPT,
            decision={"gate": "passed", "reasons": ["test"], "checks": []},
            files={},
            weights_source="smollm2",
            expected_champion=expected,
            audit_log=self.audit_log,
        )

    def target(self) -> PromotionTarget:
        return PromotionTarget(
            self.uri,
            "qa",
            self.registration.model_version,
            self.registration.prompt_version,
            self.champion_version,
            self.audit_log,
            "run-42",
        )

    def live(self) -> str | None:
        from mlflow import MlflowClient

        return current_champion(MlflowClient(tracking_uri=self.uri, registry_uri=self.uri), "qa")

    def rival_promotion(self):
        """A rival bundle registered against the champion, and a callable that promotes it once: another
        promotion winning the alias while a rollout is midway."""
        rival = self.register(make_bundle("c" * 64), self.champion_version)

        def promote_once() -> None:
            if self.live() == self.champion_version:
                promote_version(
                    self.uri,
                    "qa",
                    rival.model_version,
                    expected=self.champion_version,
                    prompt_name=PROMPT.name,
                    prompt_version=rival.prompt_version,
                )

        return rival, promote_once

    def events(self) -> list[str]:
        return [json.loads(line)["event"] for line in open(self.audit_log)]


@pytest.fixture
def registry(tmp_path):
    return Registry(tmp_path)


class Cluster:
    """One test's namespace on the real API server: the deploy step's service account bound to the Role from
    ``champion manifests``, the controller stand-in, and two answer servers (the stable and latest revision)."""

    def __init__(self, server, namespace: str, tmp_path, controller: KServeControllerStandIn, stable, latest) -> None:
        self.server, self.namespace, self.controller = server, namespace, controller
        self.stable, self.latest = stable, latest
        server.apply(render_rbac(namespace))
        self.token = server.service_account_token(namespace, "pipeline-runner")
        self.kubeconfig_path = server.kubeconfig(tmp_path / "kubeconfig", self.token, namespace)

    def live(self, name: str = "champion-qa") -> dict | None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            return client.CustomObjectsApi(self.server.admin).get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def live_spec(self, name: str = "champion-qa") -> dict:
        return self.live(name)["spec"]

    def deployer_may_only(self, verbs) -> None:
        """Rewrite the deployer Role with only ``verbs`` on inferenceservices (the real authorizer enforces it)."""
        role = render_rbac(self.namespace)[0]
        role["rules"][0]["verbs"] = list(verbs)
        self.server.apply([role])


@pytest.fixture
def cluster(kube_server, kube_namespace, tmp_path, registry):
    # Both revisions answer as the challenger's prompt transformer would: naming the bundle it serves.
    stable, latest = (
        AnswerServer({}, bundle_id=registry.challenger.id),
        AnswerServer(GOOD, bundle_id=registry.challenger.id),
    )
    standin = KServeControllerStandIn(kube_server.admin, kube_namespace, stable_url=stable.url, latest_url=latest.url)
    with standin:
        yield Cluster(kube_server, kube_namespace, tmp_path, standin, stable, latest)
    stable.close()
    latest.close()
    assert not standin.errors, standin.errors  # every status the stand-in wrote passed the CRD's schema


def service(cluster, **overrides) -> Rollout:
    options = dict(
        namespace=cluster.namespace,
        deploy_target="kserve",
        kubeconfig=cluster.kubeconfig_path,
        ready_timeout_s=10.0,
        poll_s=0.02,
        smoke_min_token_f1=0.5,
        transformer_image="registry.example.com/champion@sha256:" + "f" * 64,
    )
    return _rollout({**options, **overrides})


def install_champion(cluster, registry) -> dict:
    """The champion's InferenceService as a previous run left it (rolled out through the API as the deployer)."""
    manifest = render(
        registry.champion,
        PROMPT,
        service(cluster),
        PromotionTarget(registry.uri, "qa", registry.champion_version, 1, None),
    )
    KServeRollout(kube_api(cluster.kubeconfig_path), cluster.namespace, ready_timeout_s=10.0, poll_s=0.02).run(
        manifest, canary_traffic_percent=100, smoke=lambda url: _passing(url)
    )
    cluster.controller.seen.clear()
    return cluster.live_spec()


def _passing(url):
    from serving.smoke import SmokeResult

    return SmokeResult(url, True, "installed by the test")


def generations(cluster) -> list[int]:
    return [seen["generation"] for seen in cluster.controller.seen]


def test_first_deploy_creates_waits_smoke_tests_then_moves_the_alias(cluster, registry):
    cluster.controller.latest_url = ""  # a new service has only its stable URL
    cluster.stable.answers = GOOD
    result = deploy(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert result.promoted and result.status == "rolled_out", result.reason
    assert generations(cluster) == [1]  # one create, no further writes
    stored = cluster.live()
    assert stored["metadata"]["annotations"]["champion.io/bundle-id"] == registry.challenger.id
    assert stored["metadata"]["labels"]["champion.io/bundle"] == registry.challenger.short_id
    assert len(cluster.stable.requests) == len(EXAMPLES) and cluster.stable.requests[0]["body"]["messages"] == [
        {"role": "user", "content": EXAMPLES[0]["question"]}
    ]
    assert registry.live() == registry.registration.model_version
    assert registry.events()[-2:] == ["deployment", "alias_moved"]
    assert result.rollout["smoke"]["mean_token_f1"] == 1.0


def test_update_goes_through_a_canary_then_to_100_percent(cluster, registry):
    previous = install_champion(cluster, registry)
    result = deploy(
        registry.challenger, PROMPT, service(cluster, canary_traffic_percent=20), registry.target(), EXAMPLES
    )
    assert result.promoted, result.reason
    canary, promoted = cluster.controller.seen  # what the API server stored, generation by generation
    assert canary["generation"] == 2 and promoted["generation"] == 3
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert canary["spec"]["transformer"]["canaryTrafficPercent"] == 20
    assert canary["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"
    # The smoke test went to the candidate's own URL, not to the stable revision users are on.
    assert len(cluster.latest.requests) == len(EXAMPLES) and not cluster.stable.requests
    # Promotion is a merge patch with nulls: the real server removed the percentages.
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert "canaryTrafficPercent" not in promoted["spec"]["transformer"]
    spec = cluster.live_spec()
    assert spec == promoted["spec"] and spec != previous
    assert spec["predictor"]["model"]["storageUri"].endswith("b" * 64)
    assert registry.live() == registry.registration.model_version
    assert [e["step"] for e in result.events] == ["updated", "smoke_test", "traffic_100"]
    assert result.rollout["previous_spec"]["spec"] == previous


def test_a_canary_that_never_becomes_ready_is_rolled_back_and_nothing_is_promoted(cluster, registry):
    previous = install_champion(cluster, registry)
    cluster.controller.never_ready_if = lambda obj: obj["spec"]["predictor"]["model"]["storageUri"].endswith("b" * 64)
    options = service(cluster, ready_timeout_s=1.0)
    result = deploy(registry.challenger, PROMPT, options, registry.target(), EXAMPLES)
    assert not result.promoted and result.status == "rolled_back"
    assert "not Ready after" in result.reason and "RevisionMissing" in result.reason
    assert cluster.live_spec() == previous  # the previous spec is back, byte for byte
    assert generations(cluster) == [2, 3]  # the canary, then the restored spec
    assert registry.live() == registry.champion_version
    assert registry.events()[-1] == "deployment"
    report = deployment_report(result, options.settings)
    assert "rolled back" in report and "Previous spec" in report


def test_a_failed_smoke_test_rolls_back(cluster, registry):
    previous = install_champion(cluster, registry)
    cluster.latest.answers = {}  # the candidate answers nonsense
    result = deploy(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert not result.promoted and "smoke test failed" in result.reason and "below the smoke floor" in result.reason
    assert cluster.live_spec() == previous and registry.live() == registry.champion_version
    from mlflow import MlflowClient

    tags = (
        MlflowClient(tracking_uri=registry.uri, registry_uri=registry.uri)
        .get_model_version("qa", registry.registration.model_version)
        .tags
    )
    assert (
        tags["champion.deployment"] == "rolled_back" and tags["champion.decision"] == "approved"
    )  # passed the gate, never promoted


def test_an_answer_without_the_bundle_header_fails_the_smoke_test(cluster, registry):
    previous = install_champion(cluster, registry)
    cluster.latest.bundle_id = ""  # something answers, but nothing says it is this bundle (no prompt transformer)
    result = deploy(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert not result.promoted and "no x-champion-bundle header" in result.reason
    assert cluster.live_spec() == previous and registry.live() == registry.champion_version


def test_an_answer_from_another_bundle_fails_the_smoke_test(cluster, registry):
    install_champion(cluster, registry)
    cluster.latest.bundle_id = registry.champion.id
    result = deploy(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert not result.promoted and f"answered by bundle {registry.champion.id[:12]}" in result.reason


def test_a_kubernetes_error_mid_canary_rolls_back_before_it_is_reported(cluster, registry):
    previous = install_champion(cluster, registry)
    # The update goes in, then promoting the canary to 100% is refused by the real authorizer.
    cluster.deployer_may_only(["get", "create", "update", "delete"])
    with pytest.raises(DeployError, match="403 forbidden") as info:
        deploy(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert 'cannot patch resource "inferenceservices"' in info.value.problem
    assert "rolled back to the previous spec before this error was reported" in info.value.problem
    assert cluster.live_spec() == previous and registry.live() == registry.champion_version


def test_a_kubernetes_error_after_a_first_create_deletes_it(cluster, registry):
    cluster.controller.latest_url = ""
    cluster.stable.answers = GOOD
    cluster.controller.never_ready_if = lambda obj: True  # so the rollout keeps polling until refused
    # Once the object exists, reading it is refused: the deployer must still clean up what it created.
    cluster.controller.on_created = lambda obj: cluster.deployer_may_only(["create", "update", "patch", "delete"])
    with pytest.raises(DeployError, match="deleted before this error was reported") as info:
        deploy(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert 'cannot get resource "inferenceservices"' in info.value.problem
    assert cluster.live() is None and registry.live() == registry.champion_version


class RivalWritesFirst:
    """The ``kubernetes`` client's CustomObjectsApi, with another writer changing the object between the
    rollout's read and its replace: the one moment a test cannot otherwise reach. The 409 is the server's."""

    def __init__(self, api, rival) -> None:
        self._api, self._rival = api, rival

    def __getattr__(self, name):
        return getattr(self._api, name)

    def replace_namespaced_custom_object(self, *args, **kwargs):
        if self._rival is not None:
            rival, self._rival = self._rival, None
            rival()
        return self._api.replace_namespaced_custom_object(*args, **kwargs)


def test_a_concurrent_spec_writer_gets_409_and_is_never_overwritten(cluster, registry):
    install_champion(cluster, registry)
    admin = cluster.server.admin
    from kubernetes import client

    def someone_edits_the_spec():
        client.CustomObjectsApi(admin).patch_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, PLURAL, "champion-qa", {"spec": {"predictor": {"minReplicas": 3}}}
        )

    rollout = KServeRollout(
        RivalWritesFirst(kube_api(cluster.kubeconfig_path), someone_edits_the_spec), cluster.namespace, poll_s=0.02
    )
    manifest = render(registry.challenger, PROMPT, service(cluster), registry.target())
    with pytest.raises(DeployError, match="conflict \\(409\\)") as info:
        rollout.run(manifest, canary_traffic_percent=20, smoke=_passing)
    assert "re-run" in info.value.fix
    spec = cluster.live_spec()
    assert spec["predictor"]["minReplicas"] == 3  # the other writer's change stands
    assert spec["predictor"]["model"]["storageUri"].endswith("a" * 64)


def test_a_status_write_between_read_and_replace_is_not_a_conflict(cluster, registry):
    install_champion(cluster, registry)
    admin = cluster.server.admin
    from kubernetes import client

    def the_controller_reports():  # bumps resourceVersion, changes nothing a writer decides
        client.CustomObjectsApi(admin).patch_namespaced_custom_object_status(
            GROUP, VERSION, cluster.namespace, PLURAL, "champion-qa", {"status": {"url": cluster.stable.url + "/"}}
        )

    rollout = KServeRollout(
        RivalWritesFirst(kube_api(cluster.kubeconfig_path), the_controller_reports), cluster.namespace, poll_s=0.02
    )
    manifest = render(registry.challenger, PROMPT, service(cluster), registry.target())
    outcome = rollout.run(manifest, canary_traffic_percent=20, smoke=_passing)
    assert outcome.rolled_out, outcome.reason
    assert cluster.live_spec()["predictor"]["model"]["storageUri"].endswith("b" * 64)


def test_a_second_create_gets_409(cluster, registry):
    rollout = KServeRollout(kube_api(cluster.kubeconfig_path), cluster.namespace)
    manifest = render(registry.challenger, PROMPT, service(cluster), registry.target())
    rollout._create(manifest)
    with pytest.raises(DeployError, match="conflict \\(409\\).*already exists"):
        rollout._create(manifest)


def test_an_object_the_schema_refuses_is_a_422(cluster, registry):
    rollout = KServeRollout(kube_api(cluster.kubeconfig_path), cluster.namespace)
    manifest = render(registry.challenger, PROMPT, service(cluster), registry.target())
    manifest["spec"]["predictor"]["minReplicas"] = "two"
    with pytest.raises(DeployError, match="invalid \\(422\\).*minReplicas") as info:
        rollout._create(manifest)  # past champion's own check, straight to the server
    assert "champion manifests" in info.value.fix
    assert cluster.live() is None


def test_the_server_prunes_unknown_fields_so_champion_refuses_them_first(cluster, registry):
    from kubernetes import client

    from champion.errors import ManifestError

    manifest = render(registry.challenger, PROMPT, service(cluster), registry.target())
    manifest["spec"]["predictor"]["model"]["storage_uri"] = "s3://typo"
    # What the real server does with the typo: accepts the object and drops the field without a word.
    pruned = copy.deepcopy(manifest)
    pruned["metadata"]["name"] = "pruned"
    stored = client.CustomObjectsApi(cluster.server.admin).create_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, PLURAL, pruned
    )
    assert "storage_uri" not in stored["spec"]["predictor"]["model"]
    # So the rollout holds the manifest to the CRD strictly before it writes anything.
    with pytest.raises(ManifestError, match="storage_uri"):
        KServeRollout(kube_api(cluster.kubeconfig_path), cluster.namespace).run(
            manifest, canary_traffic_percent=10, smoke=_passing
        )
    assert cluster.live() is None


@pytest.mark.parametrize("missing", ["get", "update", "patch"])
def test_each_verb_of_the_role_is_needed_for_a_canary(cluster, registry, missing):
    previous = install_champion(cluster, registry)
    cluster.deployer_may_only(
        [verb for verb in render_rbac(cluster.namespace)[0]["rules"][0]["verbs"] if verb != missing]
    )
    with pytest.raises(DeployError, match="403 forbidden") as info:
        deploy(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert f'cannot {missing} resource "inferenceservices" in API group "serving.kserve.io"' in info.value.problem
    assert f"system:serviceaccount:{cluster.namespace}:pipeline-runner" in info.value.problem
    assert "champion manifests" in info.value.fix
    assert cluster.live_spec() == previous
    assert registry.live() == registry.champion_version


@pytest.mark.parametrize("missing", ["create", "delete"])
def test_each_verb_of_the_role_is_needed_for_a_first_deploy(cluster, registry, missing):
    cluster.controller.latest_url = ""
    cluster.stable.answers = {}  # the smoke test fails, so the new service must be deleted
    cluster.deployer_may_only(
        [verb for verb in render_rbac(cluster.namespace)[0]["rules"][0]["verbs"] if verb != missing]
    )
    with pytest.raises(DeployError, match="403 forbidden") as info:
        deploy(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert f'cannot {missing} resource "inferenceservices"' in info.value.problem
    assert registry.live() == registry.champion_version


def test_the_deployer_may_not_touch_another_namespace(cluster, registry, kube_server):
    other = kube_server.create_namespace(cluster.namespace[:50] + "-other")
    options = service(cluster, namespace=other)
    with pytest.raises(DeployError, match="403 forbidden") as info:
        deploy(registry.challenger, PROMPT, options, registry.target(), EXAMPLES)
    assert f'in the namespace "{other}"' in info.value.problem
    assert registry.live() == registry.champion_version


def test_bad_credentials_are_a_clear_error(cluster, registry, tmp_path):
    bad = cluster.server.kubeconfig(tmp_path / "bad-kubeconfig", "expired", cluster.namespace)
    with pytest.raises(DeployError, match="refused the credentials"):
        deploy(registry.challenger, PROMPT, service(cluster, kubeconfig=bad), registry.target(), EXAMPLES)
    assert registry.live() == registry.champion_version


def test_transient_server_errors_are_retried(cluster, registry, tmp_path):
    cluster.controller.latest_url = ""
    cluster.stable.answers = GOOD
    with OverloadedFront(cluster.server.port, str(cluster.server.ca_file), failures=1) as front:
        config = cluster.server.kubeconfig(tmp_path / "front", cluster.token, cluster.namespace, server=front.url)
        result = deploy(registry.challenger, PROMPT, service(cluster, kubeconfig=config), registry.target(), EXAMPLES)
    assert result.promoted and front.answered_503 == 1


def test_unreachable_api_server_is_a_clear_error(cluster, registry, tmp_path):
    from tests.conftest import free_port

    config = cluster.server.kubeconfig(
        tmp_path / "gone", cluster.token, cluster.namespace, server=f"https://127.0.0.1:{free_port()}"
    )
    with pytest.raises(DeployError, match="did not answer"):
        deploy(registry.challenger, PROMPT, service(cluster, kubeconfig=config), registry.target(), EXAMPLES)
    assert registry.live() == registry.champion_version


def test_if_another_promotion_moves_the_alias_mid_rollout_the_deployment_is_rolled_back(cluster, registry):
    previous = install_champion(cluster, registry)
    rival, rival_promotes = registry.rival_promotion()
    cluster.latest.on_request = rival_promotes
    with pytest.raises(ChampionMoved):
        deploy(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert registry.live() == rival.model_version
    assert cluster.live_spec() == previous
    assert registry.events()[-2:] == ["alias_refused", "deployment"]


def test_a_stale_champion_is_refused_before_anything_is_rolled_out(cluster, registry):
    previous = install_champion(cluster, registry)
    before = cluster.live()["metadata"]["resourceVersion"]
    target = registry.target()
    target.expected_champion = None  # evaluated as if there were no champion; v1 is live
    with pytest.raises(ChampionMoved):
        deploy(registry.challenger, PROMPT, service(cluster), target, EXAMPLES)
    assert cluster.live()["metadata"]["resourceVersion"] == before and cluster.live_spec() == previous


@pytest.mark.parametrize(
    "options, message",
    [
        ({"deploy_target": "helm"}, "deploy_target.*'kserve' or 'none'"),
        ({"canary_traffic_percent": 150}, "canary_traffic_percent.*100"),
    ],
)
def test_bad_deploy_parameters_are_refused_before_anything_is_deployed(cluster, registry, options, message):
    """The deploy step builds its settings with parameters.parse: a bad value is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=message):
        parse(DeploySettings, {"namespace": cluster.namespace, **options})
    assert registry.live() == registry.champion_version and cluster.live() is None


def test_no_smoke_examples_means_no_promotion(cluster, registry):
    cluster.controller.latest_url = ""
    cluster.stable.answers = GOOD
    result = deploy(registry.challenger, PROMPT, service(cluster), registry.target(), [])
    assert not result.promoted and "no smoke examples" in result.reason
    assert cluster.live() is None  # a first deployment that fails is removed


@pytest.mark.parametrize("right", [True, False], ids=["equivalent-candidate", "degraded-candidate"])
def test_the_shadow_stage_mirrors_with_istio_before_the_canary(cluster, registry, tmp_path, shadow_judge, right):
    """The classic path: the candidate as `<name>-shadow`, an Istio VirtualService mirroring the live host to it,
    the shadow gate on the logged pairs (real prompt routers posting to the real log sink), then the canary or
    nothing. The shadow and its mirror are gone afterwards either way."""
    from kubernetes.client.exceptions import ApiException

    from serving.kube import VIRTUAL_SERVICE
    from serving.log_sink import RequestLogSink
    from tests.shadow_traffic import SMOKE, Users, serve

    cluster.server.apply(render_rbac(cluster.namespace, shadow=True))
    previous = install_champion(cluster, registry)

    def mirroring() -> bool:
        try:
            cluster.server.admin.call_api(
                VIRTUAL_SERVICE.path(cluster.namespace, "champion-qa-shadow"),
                "GET",
                response_type="object",
                auth_settings=["BearerToken"],
            )
            return True
        except ApiException:
            return False

    with RequestLogSink(tmp_path / "requests.jsonl") as sink:
        live = serve(registry.champion, True, tmp_path, sink, "champion-qa")
        candidate = serve(registry.challenger, right, tmp_path, sink, "champion-qa")
        cluster.controller.urls["champion-qa-shadow"] = candidate.url  # where the shadow copy answers
        cluster.latest.answers = {q: f"{a}." for q, a in SMOKE}  # the canary revision, after a passing shadow
        options = service(
            cluster,
            canary_traffic_percent=20,
            shadow_requests=20,
            shadow_timeout_s=60.0,
            shadow_poll_s=0.2,
            request_log_url=sink.url,
            log_content=True,
        )
        try:
            with Users(mirroring, live, candidate):
                result = deploy(
                    registry.challenger,
                    PROMPT,
                    options,
                    registry.target(),
                    [{"question": q, "reference": a} for q, a in SMOKE],
                    judge=shadow_judge[0],
                    judge_reliability=shadow_judge[1],
                )
        finally:
            live.close()
            candidate.close()
    shadow = result.rollout["shadow"]
    assert shadow["n"] == 20 and shadow["passed"] is right, shadow["reasons"]
    mirror_seen = [s for s in cluster.controller.seen if s["name"] == "champion-qa-shadow"]
    assert len(mirror_seen) == 1  # the shadow copy: one generation, the candidate's spec
    assert mirror_seen[0]["spec"]["predictor"]["model"]["storageUri"].endswith("b" * 64)
    assert not mirroring() and cluster.live("champion-qa-shadow") is None  # both gone
    steps = [e["step"] for e in result.events]
    assert steps[:5] == ["shadow_created", "smoke_test", "shadow_started", "shadow_gate", "shadow_removed"]
    if right:
        assert result.promoted and steps[5:] == ["updated", "smoke_test", "traffic_100"]
        assert cluster.live_spec()["predictor"]["model"]["storageUri"].endswith("b" * 64)
    else:
        assert not result.promoted and "shadow gate did not pass" in result.reason
        assert cluster.live_spec() == previous  # the live service was never touched
        assert registry.live() == registry.champion_version
