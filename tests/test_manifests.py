import json
from pathlib import Path

import pytest

from champion.bundle import Bundle
from champion.errors import ManifestError
from prompts import load_prompt
from serving.manifests import (
    SCHEMAS,
    crd_schema,
    render_inference_service,
    render_rbac,
    render_serving_runtime,
    validate_strict,
    validation_errors,
)
from serving.transformer import prompt_from_env
from tests.conftest import REPO

PROMPT = load_prompt("qa-concise")
BUNDLE = Bundle(model_digest="a" * 64, prompt=PROMPT.ref, decoding={"max_tokens": 32}, dataset_digest="c" * 64)


def render(prompt=PROMPT, **overrides):
    kwargs = dict(
        name="champion-qa",
        namespace="team-a",
        storage_uri="s3://models/abc",
        model_version="3",
        registered_model_name="qa",
        transformer_image="registry.example.com/champion@sha256:" + "f" * 64,
    )
    return render_inference_service(BUNDLE, prompt, **{**kwargs, **overrides})


@pytest.mark.parametrize("runtime, route_prefix", [("huggingface-vllm", "/openai"), ("vllm", "")])
@pytest.mark.parametrize("mode", ["Serverless", "Standard"])
def test_rendered_service_passes_the_strict_crd_schema(runtime, route_prefix, mode):
    manifest = render(runtime=runtime, deployment_mode=mode)
    validate_strict(manifest)
    assert manifest["metadata"]["annotations"]["champion.io/bundle-id"] == BUNDLE.id
    assert manifest["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode
    assert manifest["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    container = manifest["spec"]["transformer"]["containers"][0]
    assert f"--predictor_route_prefix={route_prefix}" in container["args"]
    assert "--predictor_host=champion-qa-predictor.team-a" in container["args"]


def test_the_transformer_carries_exactly_the_evaluated_prompt():
    container = render()["spec"]["transformer"]["containers"][0]
    environ = {item["name"]: item["value"] for item in container["env"]}
    assert prompt_from_env(environ) == PROMPT and environ["CHAMPION_BUNDLE_ID"] == BUNDLE.id
    with pytest.raises(ManifestError, match="not the bundle's prompt"):
        render(prompt=load_prompt("qa-oneline"))


def test_runtime_and_rbac_for_a_namespace():
    runtime = render_serving_runtime("team-a")
    validate_strict(runtime)
    assert runtime["spec"]["containers"][0]["image"] == "vllm/vllm-openai:v0.33.0"
    role, binding = render_rbac("team-a", service_account="pipeline-runner")
    rule = next(r for r in role["rules"] if "inferenceservices" in r["resources"])
    assert {"get", "create", "update", "patch", "delete"} <= set(rule["verbs"])
    assert (
        binding["roleRef"]["name"] == role["metadata"]["name"] and binding["subjects"][0]["name"] == "pipeline-runner"
    )
    from kubernetes import client

    # The Kubernetes client's own models accept them (a misspelt field would fail to deserialise).
    api = client.ApiClient()
    for obj, model in ((role, "V1Role"), (binding, "V1RoleBinding")):
        response = type("R", (), {"data": json.dumps(obj)})()
        assert api.deserialize(response, model).metadata.name == "champion-deployer"
    runtime["spec"]["containers"][0]["imagePullPolicy_"] = "Always"
    with pytest.raises(ManifestError, match="imagePullPolicy_"):
        validate_strict(runtime)


def test_strict_validation_catches_a_misspelt_key_the_crd_alone_would_prune():
    manifest = render()
    manifest["spec"]["predictor"]["model"]["storage_uri"] = manifest["spec"]["predictor"]["model"].pop("storageUri")
    errors = validation_errors(manifest)
    assert any("storage_uri" in e for e in errors)
    with pytest.raises(ManifestError, match="storage_uri"):
        validate_strict(manifest)


def test_wrong_types_are_rejected():
    manifest = render()
    manifest["spec"]["predictor"]["minReplicas"] = "one"
    assert any("minReplicas" in e for e in validation_errors(manifest))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"name": "Bad_Name"}, "DNS-1123 label"),
        ({"runtime": "triton"}, "unknown serving runtime"),
        ({"storage_uri": "models/abc"}, "not a URI"),
        ({"deployment_mode": "Knative"}, "unknown deployment mode"),
        ({"transformer_image": ""}, "no image"),
    ],
)
def test_bad_parameters(overrides, message):
    with pytest.raises(ManifestError, match=message):
        render(**overrides)


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_vendored_schemas_equal_the_kserve_crds(kind, tmp_path):
    import gzip

    path, crd_file, version = SCHEMAS[kind]
    crd_path = tmp_path / Path(crd_file).name
    crd_path.write_bytes(gzip.decompress((REPO / "tests" / "contracts" / f"{crd_file}.gz").read_bytes()))
    assert json.loads(path.read_text()) == crd_schema(crd_path, version)


def test_champion_manifests_writes_the_runtime_and_rbac(tmp_path):
    import subprocess
    import sys

    import yaml

    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "manifests", "--namespace", "team-a", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    runtime = yaml.safe_load((tmp_path / "servingruntime-vllm.yaml").read_text())
    validate_strict(runtime)
    kinds = [doc["kind"] for doc in yaml.safe_load_all((tmp_path / "rbac.yaml").read_text())]
    assert kinds == ["Role", "RoleBinding"]
    llm = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "manifests", "--namespace", "team-a", "--output", str(tmp_path)]
        + ["--serving-api", "llminferenceservice"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert llm.returncode == 0, llm.stderr
    role = next(yaml.safe_load_all((tmp_path / "rbac.yaml").read_text()))
    assert [(rule["apiGroups"][0], rule["resources"][0]) for rule in role["rules"]] == [
        ("serving.kserve.io", "llminferenceservices"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("apps", "deployments"),
        ("", "services"),
    ]


def _contained(sent, stored) -> bool:
    """Every field champion sent is in what the server stored, with its value (the server may add defaults)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(k in stored and _contained(v, stored[k]) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(stored, list) and len(sent) == len(stored) and all(map(_contained, sent, stored))
    return sent == stored


def test_every_manifest_champion_renders_is_accepted_by_a_real_api_server(kube_server, kube_namespace, tmp_path):
    """Server-side apply, dry-run then for real, of each rendered object: nothing refused, nothing pruned."""
    import subprocess
    import sys

    import yaml

    from serving.manifests import DEPLOYMENT_MODES, RUNTIMES

    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "manifests", "--namespace", kube_namespace, "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    objects = [yaml.safe_load((tmp_path / "servingruntime-vllm.yaml").read_text())]
    objects += list(yaml.safe_load_all((tmp_path / "rbac.yaml").read_text()))
    from serving.manifests import Autoscaling

    for mode in DEPLOYMENT_MODES:
        for runtime in RUNTIMES:
            objects.append(
                render(
                    name=f"qa-{mode.lower()}-{runtime}",
                    namespace=kube_namespace,
                    runtime=runtime,
                    deployment_mode=mode,
                    autoscaling=Autoscaling(1, 4, "cpu" if mode == "Standard" else "concurrency", 2),
                )
            )
    assert len(objects) == 3 + len(DEPLOYMENT_MODES) * len(RUNTIMES)

    dry = kube_server.apply(objects, dry_run=True)
    assert all(_contained(sent, answer) for sent, answer in zip(objects, dry))
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import NotFoundError

    dynamic = DynamicClient(kube_server.admin)
    with pytest.raises(NotFoundError):  # a dry run stores nothing
        dynamic.resources.get(api_version=objects[0]["apiVersion"], kind=objects[0]["kind"]).get(
            name=objects[0]["metadata"]["name"], namespace=kube_namespace
        )
    kube_server.apply(objects)
    for sent in objects:
        resource = dynamic.resources.get(api_version=sent["apiVersion"], kind=sent["kind"])
        stored = resource.get(name=sent["metadata"]["name"], namespace=kube_namespace).to_dict()
        assert _contained(sent, stored), (
            f"{sent['kind']} {sent['metadata']['name']} was changed or pruned by the server"
        )


def test_autoscaling_is_rendered_and_impossible_combinations_are_refused():
    from serving.manifests import Autoscaling

    predictor = render(autoscaling=Autoscaling(0, 8, "rps", 20))["spec"]["predictor"]
    assert {k: predictor[k] for k in ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget")} == {
        "minReplicas": 0,
        "maxReplicas": 8,
        "scaleMetric": "rps",
        "scaleTarget": 20,
    }
    validate_strict(render(autoscaling=Autoscaling(2, 4, "cpu", 70), deployment_mode="Standard"))
    with pytest.raises(ManifestError, match="cannot scale on concurrency"):
        render(autoscaling=Autoscaling(1, 4, "concurrency", 1), deployment_mode="Standard")
    with pytest.raises(ManifestError, match="below min_replicas"):
        render(autoscaling=Autoscaling(3, 2))
