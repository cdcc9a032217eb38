"""KServe manifests for a promoted bundle: rendered as plain camelCase dicts and validated strictly.

The CRD's OpenAPI schema does not forbid unknown keys (the API server silently prunes them), so a
misspelt field would vanish without an error. ``validate_strict`` adds ``additionalProperties: false``
to every object schema that declares its properties, so a typo fails here instead.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

from champion.bundle import Bundle
from champion.errors import ManifestError

SCHEMA_PATH = Path(__file__).resolve().parent / "crds" / "inferenceservice-v1beta1.json"
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
RUNTIMES = {
    # KServe's Hugging Face server with the vLLM backend: OpenAI routes under /openai/v1.
    "huggingface-vllm": {"modelFormat": {"name": "huggingface"}, "args": ["--backend=vllm"]},
    # KServe's upstream vLLM runtime (v0.20+): plain vLLM OpenAI routes under /v1.
    "vllm": {"modelFormat": {"name": "vLLM"}, "args": []},
}


def render_inference_service(
    bundle: Bundle,
    *,
    name: str,
    namespace: str,
    storage_uri: str,
    model_version: str,
    registered_model_name: str,
    runtime: str = "huggingface-vllm",
    gpus: int = 1,
    max_model_len: int = 4096,
) -> dict:
    """The InferenceService that serves ``bundle``. Labels carry a short id, annotations the full record."""
    if not _DNS_LABEL.match(name) or len(name) > 45:
        raise ManifestError(f"service name {name!r} is not a valid DNS label of at most 45 characters.", "use lowercase letters, digits and '-', starting with a letter.")
    if runtime not in RUNTIMES:
        raise ManifestError(f"unknown serving runtime {runtime!r}.", f"choose one of {sorted(RUNTIMES)}.")
    if not storage_uri or "://" not in storage_uri:
        raise ManifestError(f"storage URI {storage_uri!r} is not a URI.", "pass where the promoted weights live, e.g. s3://bucket/models/<digest> or pvc://models/<digest>.")
    chosen = RUNTIMES[runtime]
    resources = {"cpu": "4", "memory": "16Gi"}
    if gpus:
        resources["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "champion",
                "champion.io/bundle": bundle.short_id,
            },
            "annotations": {
                "serving.kserve.io/deploymentMode": "Standard",
                "champion.io/bundle-id": bundle.id,
                "champion.io/model-digest": bundle.model_digest,
                "champion.io/prompt": f"{bundle.prompt.name}@{bundle.prompt.version}",
                "champion.io/prompt-digest": bundle.prompt.digest,
                "champion.io/decoding": json.dumps(bundle.decoding, sort_keys=True),
                "champion.io/mlflow-model": f"{registered_model_name}/{model_version}",
            },
        },
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "model": {
                    "modelFormat": dict(chosen["modelFormat"]),
                    "args": [f"--model_name={name}", *chosen["args"], f"--max_model_len={max_model_len}"],
                    "storageUri": storage_uri,
                    "resources": {"requests": dict(resources), "limits": dict(resources)},
                },
            }
        },
    }


def _close_objects(schema: dict) -> dict:
    """Forbid unknown keys wherever the schema lists properties and does not ask to keep unknown fields."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        for value in schema.values():
            _close_objects(value)
    elif isinstance(schema, list):
        for item in schema:
            _close_objects(item)
    return schema


@lru_cache(maxsize=1)
def strict_schema() -> dict:
    schema = copy.deepcopy(json.loads(SCHEMA_PATH.read_text()))
    _close_objects(schema)
    # ObjectMeta is validated by the API server itself; the CRD leaves it open and so do we.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def validation_errors(manifest: dict) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(strict_schema())
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(manifest))


def validate_strict(manifest: dict) -> None:
    errors = validation_errors(manifest)
    if errors:
        raise ManifestError(
            "the InferenceService does not match the KServe v1beta1 CRD schema: " + "; ".join(errors[:10]),
            "fix the fields named (unknown keys are errors: check camelCase spelling).",
        )


def refresh_schema(crd_path: str) -> None:
    import yaml

    crd = yaml.load(Path(crd_path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    SCHEMA_PATH.write_text(json.dumps(version["schema"]["openAPIV3Schema"], sort_keys=True, separators=(",", ":")))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--refresh-schema":
        refresh_schema(sys.argv[2])
    else:
        sys.exit("usage: python -m serving.manifests --refresh-schema PATH_TO_CRD_YAML")
