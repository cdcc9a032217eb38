"""The deploy step against a fake Kubernetes API server (tests/fake_kube.py) held to the KServe CRD.

The real ``kubernetes`` client makes every call, authenticated from a kubeconfig; the registry is a
real MLflow (sqlite). Smoke tests go over HTTP to a scripted model on 127.0.0.1. What this does not
prove: what a real KServe controller and Knative do with the objects (traffic splitting, pods,
probes, webhook-only rules); `kubectl apply --dry-run=server` on a cluster is the final check.
"""

import json

import pytest
import yaml

from champion.bundle import Bundle
from champion.errors import DeployError
from prompts import load_prompt
from serving.deploy import PromotionTarget, ServiceOptions, deploy_bundle, deployment_report, render_for
from serving.register import register_bundle
from serving.registry import ChampionMoved, current_champion, promote_version
from serving.rollout import KServeRollout, kube_api
from tests.answer_server import AnswerServer
from tests.fake_kube import FakeKubeAPI

PROMPT = load_prompt("qa-concise")
EXAMPLES = [
    {"id": "1", "question": "What is the capital of France?", "reference": "Paris"},
    {"id": "2", "question": "What is the capital of Japan?", "reference": "Tokyo"},
    {"id": "3", "question": "How many legs does a spider have?", "reference": "eight"},
]
GOOD = {e["question"]: f"{e['reference']}." for e in EXAMPLES}


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

    def events(self) -> list[str]:
        return [json.loads(line)["event"] for line in open(self.audit_log)]


@pytest.fixture
def registry(tmp_path):
    return Registry(tmp_path)


@pytest.fixture
def cluster(tmp_path, registry):
    # Both revisions answer as the challenger's prompt transformer would: naming the bundle it serves.
    stable, latest = (
        AnswerServer({}, bundle_id=registry.challenger.id),
        AnswerServer(GOOD, bundle_id=registry.challenger.id),
    )
    with FakeKubeAPI(stable_url=stable.url, latest_url=latest.url) as fake:
        fake.stable, fake.latest = stable, latest
        fake.kubeconfig_path = fake.kubeconfig(tmp_path / "kubeconfig")
        yield fake
    stable.close()
    latest.close()


def service(cluster, **overrides) -> ServiceOptions:
    options = dict(
        namespace="team-a",
        target="kserve",
        kubeconfig=cluster.kubeconfig_path,
        ready_timeout_s=1.0,
        poll_s=0.02,
        smoke_min_token_f1=0.5,
        transformer_image="registry.example.com/champion@sha256:" + "f" * 64,
    )
    return ServiceOptions(**{**options, **overrides})


def live_spec(cluster, name="champion-qa") -> dict:
    return cluster.objects[("team-a", name)]["spec"]


def install_champion(cluster, registry) -> dict:
    """The champion's InferenceService as a previous run left it (created through the fake API)."""
    manifest = render_for(
        registry.champion,
        PROMPT,
        service(cluster),
        PromotionTarget(registry.uri, "qa", registry.champion_version, 1, None),
    )
    KServeRollout(kube_api(cluster.kubeconfig_path), "team-a", ready_timeout_s=1.0, poll_s=0.02).run(
        manifest, canary_traffic_percent=100, smoke=lambda url: _passing(url)
    )
    cluster.requests.clear()
    return manifest["spec"]


def _passing(url):
    from serving.smoke import SmokeResult

    return SmokeResult(url, True, "installed by the test")


def test_first_deploy_creates_waits_smoke_tests_then_moves_the_alias(cluster, registry):
    cluster.latest_url = ""  # a new service has only its stable URL
    cluster.stable.answers = GOOD
    result = deploy_bundle(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert result.promoted and result.status == "rolled_out", result.reason
    assert [r["method"] for r in cluster.requests][:2] == ["GET", "POST"] and not cluster.rejected
    stored = cluster.objects[("team-a", "champion-qa")]
    assert stored["metadata"]["annotations"]["champion.io/bundle-id"] == registry.challenger.id
    assert len(cluster.stable.requests) == len(EXAMPLES) and cluster.stable.requests[0]["body"]["messages"] == [
        {"role": "user", "content": EXAMPLES[0]["question"]}
    ]
    assert registry.live() == registry.registration.model_version
    assert registry.events()[-2:] == ["deployment", "alias_moved"]
    assert result.rollout["smoke"]["mean_token_f1"] == 1.0


def test_update_goes_through_a_canary_then_to_100_percent(cluster, registry):
    previous = install_champion(cluster, registry)
    result = deploy_bundle(
        registry.challenger, PROMPT, service(cluster, canary_traffic_percent=20), registry.target(), EXAMPLES
    )
    assert result.promoted, result.reason
    put = next(r for r in cluster.requests if r["method"] == "PUT")
    assert (
        put["body"]["spec"]["predictor"]["canaryTrafficPercent"] == 20
        and put["body"]["spec"]["transformer"]["canaryTrafficPercent"] == 20
    )
    assert put["body"]["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"
    assert put["body"]["metadata"]["resourceVersion"]  # optimistic concurrency
    # The smoke test went to the candidate's own URL, not to the stable revision users are on.
    assert len(cluster.latest.requests) == len(EXAMPLES) and not cluster.stable.requests
    patch = next(r for r in cluster.requests if r["method"] == "PATCH")
    assert patch["content_type"] == "application/merge-patch+json"
    assert patch["body"] == {
        "spec": {"predictor": {"canaryTrafficPercent": None}, "transformer": {"canaryTrafficPercent": None}}
    }
    spec = live_spec(cluster)
    assert "canaryTrafficPercent" not in spec["predictor"] and spec != previous
    assert spec["predictor"]["model"]["storageUri"].endswith("b" * 64)
    assert registry.live() == registry.registration.model_version
    assert [e["step"] for e in result.events] == ["updated", "smoke_test", "traffic_100"]
    assert result.rollout["previous_spec"]["spec"] == previous


def test_a_canary_that_never_becomes_ready_is_rolled_back_and_nothing_is_promoted(cluster, registry):
    previous = install_champion(cluster, registry)
    cluster.never_ready_if = lambda obj: obj["spec"]["predictor"]["model"]["storageUri"].endswith("b" * 64)
    result = deploy_bundle(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert not result.promoted and result.status == "rolled_back"
    assert "not Ready after" in result.reason and "RevisionMissing" in result.reason
    assert live_spec(cluster) == previous  # the previous spec is back, byte for byte
    assert registry.live() == registry.champion_version
    assert registry.events()[-1] == "deployment"
    report = deployment_report(result, service(cluster))
    assert "rolled back" in report and "Previous spec" in report


def test_a_failed_smoke_test_rolls_back(cluster, registry):
    previous = install_champion(cluster, registry)
    cluster.latest.answers = {}  # the candidate answers nonsense
    result = deploy_bundle(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert not result.promoted and "smoke test failed" in result.reason and "below the smoke floor" in result.reason
    assert live_spec(cluster) == previous and registry.live() == registry.champion_version
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
    cluster.latest.bundle_id = (
        ""  # something answers, but nothing says it is this bundle (no prompt transformer in front)
    )
    result = deploy_bundle(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert not result.promoted and "no x-champion-bundle header" in result.reason
    assert live_spec(cluster) == previous and registry.live() == registry.champion_version


def test_an_answer_from_another_bundle_fails_the_smoke_test(cluster, registry):
    install_champion(cluster, registry)
    cluster.latest.bundle_id = registry.champion.id
    result = deploy_bundle(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert not result.promoted and f"answered by bundle {registry.champion.id[:12]}" in result.reason


def test_a_kubernetes_error_mid_canary_rolls_back_before_it_is_reported(cluster, registry):
    previous = install_champion(cluster, registry)
    cluster.forbidden_verbs = {"patch"}  # the update goes in, then promoting the canary to 100% is refused
    with pytest.raises(DeployError, match="403 forbidden") as info:
        deploy_bundle(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert "rolled back to the previous spec before this error was reported" in info.value.problem
    assert live_spec(cluster) == previous and registry.live() == registry.champion_version


def test_a_kubernetes_error_after_a_first_create_deletes_it(cluster, registry):
    cluster.latest_url = ""
    cluster.stable.answers = GOOD
    cluster.after_create = lambda: cluster.forbidden_verbs.add("get")  # polling for Ready is refused once it exists
    with pytest.raises(DeployError, match="deleted before this error was reported"):
        deploy_bundle(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert ("team-a", "champion-qa") not in cluster.objects and registry.live() == registry.champion_version


def test_a_concurrent_writer_gets_409_and_nothing_changes(cluster, registry):
    previous = install_champion(cluster, registry)
    cluster.conflict_on_next_update = True
    with pytest.raises(DeployError, match="conflict \\(409\\)") as info:
        deploy_bundle(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert "re-run" in info.value.fix
    assert live_spec(cluster) == previous and registry.live() == registry.champion_version


def test_a_second_create_gets_409(cluster, registry):
    rollout = KServeRollout(kube_api(cluster.kubeconfig_path), "team-a")
    manifest = render_for(registry.challenger, PROMPT, service(cluster), registry.target())
    rollout._create(manifest)
    with pytest.raises(DeployError, match="conflict \\(409\\)"):
        rollout._create(manifest)


def test_forbidden_is_a_clear_rbac_error(cluster, registry):
    cluster.forbidden_verbs = {"create"}
    with pytest.raises(DeployError, match="403 forbidden") as info:
        deploy_bundle(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert "champion manifests" in info.value.fix
    assert registry.live() == registry.champion_version


def test_bad_credentials_are_a_clear_error(cluster, registry, tmp_path):
    config = yaml.safe_load(open(cluster.kubeconfig_path))
    config["users"][0]["user"]["token"] = "expired"
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(DeployError, match="refused the credentials"):
        deploy_bundle(registry.challenger, PROMPT, service(cluster, kubeconfig=str(bad)), registry.target(), EXAMPLES)
    assert registry.live() == registry.champion_version


def test_transient_server_errors_are_retried(cluster, registry):
    cluster.latest_url = ""
    cluster.stable.answers = GOOD
    cluster.server_errors = 1
    assert deploy_bundle(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES).promoted


def test_unreachable_api_server_is_a_clear_error(registry, tmp_path):
    with FakeKubeAPI() as fake:
        path = fake.kubeconfig(tmp_path / "kubeconfig")
    with pytest.raises(DeployError, match="did not answer"):
        deploy_bundle(
            registry.challenger,
            PROMPT,
            ServiceOptions(namespace="team-a", target="kserve", kubeconfig=path),
            registry.target(),
            EXAMPLES,
        )
    assert registry.live() == registry.champion_version


def test_the_fake_api_rejects_what_the_crd_would_prune(cluster, registry):
    manifest = render_for(registry.challenger, PROMPT, service(cluster), registry.target())
    manifest["spec"]["predictor"]["model"]["storage_uri"] = "s3://typo"
    with pytest.raises(DeployError, match="invalid \\(422\\).*storage_uri"):
        KServeRollout(kube_api(cluster.kubeconfig_path), "team-a").run(
            manifest, canary_traffic_percent=10, smoke=_passing
        )


def test_if_another_promotion_moves_the_alias_mid_rollout_the_deployment_is_rolled_back(cluster, registry):
    previous = install_champion(cluster, registry)
    rival = registry.register(make_bundle("c" * 64), registry.champion_version)
    moved = []

    def rival_promotes():
        if not moved:
            moved.append(
                promote_version(
                    registry.uri,
                    "qa",
                    rival.model_version,
                    expected=registry.champion_version,
                    prompt_name=PROMPT.name,
                    prompt_version=rival.prompt_version,
                )
            )

    cluster.latest.on_request = rival_promotes
    with pytest.raises(ChampionMoved):
        deploy_bundle(registry.challenger, PROMPT, service(cluster), registry.target(), EXAMPLES)
    assert registry.live() == rival.model_version
    assert live_spec(cluster) == previous
    assert registry.events()[-2:] == ["alias_refused", "deployment"]


def test_a_stale_champion_is_refused_before_anything_is_rolled_out(cluster, registry):
    install_champion(cluster, registry)
    target = registry.target()
    target.expected_champion = None  # evaluated as if there were no champion; v1 is live
    with pytest.raises(ChampionMoved):
        deploy_bundle(registry.challenger, PROMPT, service(cluster), target, EXAMPLES)
    assert not cluster.requests


@pytest.mark.parametrize(
    "options, message", [({"target": "helm"}, "unknown deploy target"), ({"canary_traffic_percent": 150}, "0..100")]
)
def test_bad_deploy_parameters(cluster, registry, options, message):
    with pytest.raises(DeployError, match=message):
        deploy_bundle(registry.challenger, PROMPT, service(cluster, **options), registry.target(), EXAMPLES)
    assert registry.live() == registry.champion_version


def test_no_smoke_examples_means_no_promotion(cluster, registry):
    cluster.latest_url = ""
    cluster.stable.answers = GOOD
    result = deploy_bundle(registry.challenger, PROMPT, service(cluster), registry.target(), [])
    assert not result.promoted and "no smoke examples" in result.reason
    assert ("team-a", "champion-qa") not in cluster.objects  # a first deployment that fails is removed
