import json

import pytest
import yaml

from champion.bundle import Bundle, PromptRef
from champion.errors import ManifestError
from serving.manifests import SCHEMA_PATH, render_inference_service, validate_strict, validation_errors
from tests.conftest import SHARED

BUNDLE = Bundle(model_digest="a" * 64, prompt=PromptRef(name="qa-concise", version=1, digest="b" * 64), decoding={"max_tokens": 32}, dataset_digest="c" * 64)


def render(**overrides):
    kwargs = dict(name="champion-qa", namespace="team-a", storage_uri="s3://models/abc", model_version="3", registered_model_name="qa")
    return render_inference_service(BUNDLE, **{**kwargs, **overrides})


@pytest.mark.parametrize("runtime", ["huggingface-vllm", "vllm"])
def test_rendered_service_passes_the_strict_crd_schema(runtime):
    manifest = render(runtime=runtime)
    validate_strict(manifest)
    assert manifest["metadata"]["annotations"]["champion.io/bundle-id"] == BUNDLE.id
    assert manifest["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


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


@pytest.mark.parametrize("overrides, message", [({"name": "Bad_Name"}, "DNS label"), ({"runtime": "triton"}, "unknown serving runtime"), ({"storage_uri": "models/abc"}, "not a URI")])
def test_bad_parameters(overrides, message):
    with pytest.raises(ManifestError, match=message):
        render(**overrides)


def test_vendored_schema_equals_the_shared_contract():
    crd_path = SHARED / "kserve-crds" / "serving.kserve.io_inferenceservices.yaml"
    if not crd_path.is_file():
        pytest.skip(f"contract file {crd_path} is not beside this checkout")
    crd = yaml.load(crd_path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    assert json.loads(SCHEMA_PATH.read_text()) == version["schema"]["openAPIV3Schema"]
