"""Kubernetes objects for serving a promoted bundle: rendered as plain camelCase dicts, validated strictly.

- ``render_inference_service``: the InferenceService (vLLM predictor + champion's prompt transformer).
- ``render_serving_runtime``: a namespaced vLLM ServingRuntime pinned to the vLLM release the
  pipeline generates with (applied once per namespace).
- ``render_rbac``: the Role and RoleBinding the pipeline's service account needs to deploy.

The CRDs' OpenAPI schemas do not forbid unknown keys (the API server silently prunes them), so a
misspelt field would vanish without an error. ``validate_strict`` adds ``additionalProperties: false``
to every object schema that declares its properties, so a typo fails here instead.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from champion.bundle import Bundle
from champion.errors import ManifestError
from champion.parameters import PromotionParameters
from prompts import PromptTemplate

CRDS = Path(__file__).resolve().parent / "crds"
SCHEMAS = {  # kind -> (vendored schema, the CRD file it comes from (relative to the contract files), version)
    "InferenceService": (
        CRDS / "inferenceservice-v1beta1.json",
        "kserve-crds/serving.kserve.io_inferenceservices.yaml",
        "v1beta1",
    ),
    "ServingRuntime": (
        CRDS / "servingruntime-v1alpha1.json",
        "kserve-crds/serving.kserve.io_servingruntimes.yaml",
        "v1alpha1",
    ),
    "LLMInferenceService": (
        CRDS / "llminferenceservice-v1alpha2.json",
        "kserve-crds/llmisvc/serving.kserve.io_llminferenceservices.yaml",
        "v1alpha2",
    ),
    "HTTPRoute": (CRDS / "httproute-v1.json", "cluster-crds/gatewayapi_httproute.yaml", "v1"),
    "VirtualService": (CRDS / "virtualservice-v1beta1.json", "cluster-crds/istio_virtualservice.yaml", "v1beta1"),
    "TrainJob": (
        CRDS / "trainjob-v1alpha1.json",
        "cluster-crds/trainer/trainer.kubeflow.org_trainjobs.yaml",
        "v1alpha1",
    ),
}
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
VLLM_RUNTIME_NAME = "champion-vllm"
TRANSFORMER_GRACE_S = 30
VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"  # the release generation/vllm_backend.py is written against
RUNTIMES: dict[str, dict[str, typing.Any]] = {
    # KServe's Hugging Face server with the vLLM backend (ClusterServingRuntime shipped with KServe):
    # OpenAI routes under /openai/v1.
    "huggingface-vllm": {
        "modelFormat": {"name": "huggingface"},
        "args": ["--backend=vllm"],
        "route_prefix": "/openai",
        "model_name_arg": True,
    },
    # champion's namespaced runtime (render_serving_runtime): upstream vLLM, routes under /v1, the
    # same engine release as the pipeline's generation step.
    "vllm": {
        "modelFormat": {"name": "vLLM"},
        "runtime": VLLM_RUNTIME_NAME,
        "args": [],
        "route_prefix": "",
        "model_name_arg": False,
    },
}
DEPLOYMENT_MODES = typing.get_args(
    PromotionParameters.model_fields["deployment_mode"].annotation
)  # one list: the parameter model's


@dataclass(frozen=True)
class Autoscaling:
    """The predictor's replicas and what KServe's autoscaler scales on (Knative's in Serverless mode, an HPA
    in Standard mode, which only knows cpu and memory)."""

    min_replicas: int = 1
    max_replicas: int = 1
    metric: str = "concurrency"
    target: int = 1

    def render(self, deployment_mode: str) -> dict:
        if self.max_replicas < max(self.min_replicas, 1):
            raise ManifestError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas}).",
                "set max_replicas to at least min_replicas (and at least 1).",
            )
        if (
            deployment_mode == "Standard"
            and self.metric in ("concurrency", "rps")
            and self.max_replicas > self.min_replicas
        ):
            raise ManifestError(
                f"Standard mode scales with a Kubernetes HPA, which cannot scale on {self.metric}.",
                "use scale_metric cpu or memory in Standard mode, or Serverless mode for concurrency/rps.",
            )
        return {
            "minReplicas": self.min_replicas,
            "maxReplicas": self.max_replicas,
            "scaleMetric": self.metric,
            "scaleTarget": self.target,
        }


def _check_name(name: str, what: str, max_length: int = 45) -> None:
    """A DNS-1123 label (RFC 1123), as Kubernetes requires of namespaces and service names. Services are
    held to 45 characters: KServe and Knative append suffixes (-predictor-00001-deployment...)."""
    if not _DNS_LABEL.match(name) or len(name) > max_length:
        raise ManifestError(
            f"{what} {name!r} is not a valid DNS-1123 label of at most {max_length} characters.",
            "use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit.",
        )


def check_namespace(namespace: str) -> None:
    _check_name(namespace, "namespace", max_length=63)


def _check_inference_service_inputs(
    bundle: Bundle,
    prompt: PromptTemplate,
    name: str,
    namespace: str,
    runtime: str,
    deployment_mode: str,
    storage_uri: str,
) -> None:
    _check_name(name, "service name")
    check_namespace(namespace)
    if runtime not in RUNTIMES:
        raise ManifestError(f"unknown serving runtime {runtime!r}.", f"choose one of {sorted(RUNTIMES)}.")
    if deployment_mode not in DEPLOYMENT_MODES:
        raise ManifestError(
            f"unknown deployment mode {deployment_mode!r}.",
            f"choose one of {list(DEPLOYMENT_MODES)} (Serverless supports canary traffic splits).",
        )
    if not storage_uri or "://" not in storage_uri:
        raise ManifestError(
            f"storage URI {storage_uri!r} is not a URI.",
            "pass where the promoted weights live, e.g. s3://bucket/models/<digest> or pvc://models/<digest>.",
        )
    if prompt.ref != bundle.prompt:
        raise ManifestError(
            f"prompt {prompt.name}@{prompt.version} (digest {prompt.digest[:12]}) is not the bundle's prompt ({bundle.prompt.digest[:12]}).",
            "deploy with the prompt the bundle was evaluated with.",
        )


def _prompt_transformer(
    bundle: Bundle,
    prompt: PromptTemplate,
    name: str,
    namespace: str,
    image: str,
    route_prefix: str,
    request_log_url: str,
    log_content: bool,
) -> dict:
    """The transformer in front of the predictor: it applies the bundle's prompt and logs each request."""
    return {
        "minReplicas": 1,
        "containers": [
            {
                "name": "kserve-container",
                "image": image,
                "command": ["python", "-m", "serving.transformer"],
                "args": [
                    f"--model_name={name}",
                    f"--predictor_host={name}-predictor.{namespace}",
                    f"--predictor_route_prefix={route_prefix}",
                    "--host=0.0.0.0",
                ],
                "env": transformer_env(bundle, prompt, request_log_url=request_log_url, log_content=log_content),
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
                # KServe's model server answers both from its own routes; tests/test_containers.py probes the
                # image's transformer exactly as these say.
                "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}, "periodSeconds": 5},
                "livenessProbe": {
                    "httpGet": {"path": "/v2/health/live", "port": 8080},
                    "periodSeconds": 10,
                    "failureThreshold": 3,
                },
            }
        ],
        # In-flight requests finish after SIGTERM (uvicorn's graceful shutdown), well inside this.
        "terminationGracePeriodSeconds": TRANSFORMER_GRACE_S,
    }


def render_inference_service(
    bundle: Bundle,
    prompt: PromptTemplate,
    *,
    name: str,
    namespace: str,
    storage_uri: str,
    model_version: str,
    registered_model_name: str,
    transformer_image: str,
    runtime: str = "huggingface-vllm",
    deployment_mode: str = "Serverless",
    gpus: int = 1,
    max_model_len: int = 4096,
    service_account: str = "",
    pipeline_run: str = "",
    request_log_url: str = "",
    log_content: bool = False,
    autoscaling: Autoscaling = Autoscaling(),
) -> dict:
    """The InferenceService that serves ``bundle``: labels carry a short id, annotations the full record.

    The predictor runs the weights; the transformer applies ``prompt`` (checked against the bundle)
    so clients send plain messages.
    """
    _check_inference_service_inputs(bundle, prompt, name, namespace, runtime, deployment_mode, storage_uri)
    if not transformer_image:
        raise ManifestError(
            "no image was given for the prompt transformer.",
            "pass the champion CPU image (compile.sh sets it from CHAMPION_CPU_IMAGE).",
        )
    chosen = RUNTIMES[runtime]
    resources = {"cpu": "4", "memory": "16Gi"}
    if gpus:
        resources["nvidia.com/gpu"] = str(gpus)
    model = {
        "modelFormat": dict(chosen["modelFormat"]),
        "args": [
            *([f"--model_name={name}"] if chosen["model_name_arg"] else []),
            *chosen["args"],
            f"--max_model_len={max_model_len}",
        ],
        "storageUri": storage_uri,
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }
    if "runtime" in chosen:
        model["runtime"] = chosen["runtime"]
    predictor: dict = {**autoscaling.render(deployment_mode), "model": model}
    transformer = _prompt_transformer(
        bundle, prompt, name, namespace, transformer_image, chosen["route_prefix"], request_log_url, log_content
    )
    if service_account:
        predictor["serviceAccountName"] = service_account
    labels, annotations = bundle_metadata(
        bundle, model_version=model_version, registered_model_name=registered_model_name, pipeline_run=pipeline_run
    )
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"serving.kserve.io/deploymentMode": deployment_mode, **annotations},
        },
        "spec": {"predictor": predictor, "transformer": transformer},
    }


def bundle_metadata(
    bundle: Bundle, *, model_version: str, registered_model_name: str, pipeline_run: str = ""
) -> tuple[dict, dict]:
    """(labels, annotations) that name the bundle on every object serving it, on either serving path."""
    labels = {
        "app.kubernetes.io/managed-by": "champion",
        "champion.io/bundle": bundle.short_id,
        "champion.io/mlflow-version": str(model_version),
    }
    annotations = {
        "champion.io/bundle-id": bundle.id,
        "champion.io/model-digest": bundle.model_digest,
        "champion.io/prompt": f"{bundle.prompt.name}@{bundle.prompt.version}",
        "champion.io/prompt-digest": bundle.prompt.digest,
        "champion.io/decoding": json.dumps(bundle.decoding, sort_keys=True),
        "champion.io/mlflow-model": f"{registered_model_name}/{model_version}",
    }
    if pipeline_run:
        annotations["champion.io/pipeline-run"] = pipeline_run
    return labels, annotations


def transformer_env(
    bundle: Bundle, prompt: PromptTemplate, *, request_log_url: str = "", log_content: bool = False
) -> list[dict]:
    """The prompt transformer's environment: the bundle's prompt with its digest (checked at start), the
    bundle's identity for its answers and request records, and where those records go."""
    env = [
        {"name": "CHAMPION_PROMPT", "value": prompt.model_dump_json()},
        {"name": "CHAMPION_PROMPT_DIGEST", "value": prompt.digest},
        {"name": "CHAMPION_BUNDLE_ID", "value": bundle.id},
        {"name": "CHAMPION_MODEL_DIGEST", "value": bundle.model_digest},
    ]
    if request_log_url:
        env.append({"name": "CHAMPION_REQUEST_LOG_URL", "value": request_log_url})
        env.append({"name": "CHAMPION_LOG_CONTENT", "value": "true" if log_content else "false"})
    return env


def render_serving_runtime(namespace: str, *, image: str = VLLM_IMAGE, name: str = VLLM_RUNTIME_NAME) -> dict:
    """A namespaced ServingRuntime running upstream vLLM's OpenAI server on the InferenceService's weights."""
    _check_name(name, "runtime name")
    check_namespace(namespace)
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "champion"}},
        "spec": {
            "annotations": {"prometheus.kserve.io/port": "8080", "prometheus.kserve.io/path": "/metrics"},
            "supportedModelFormats": [{"name": "vLLM", "version": "1", "autoSelect": False}],
            "protocolVersions": ["v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": image,
                    "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
                    "args": ["--port=8080", "--served-model-name={{.Name}}", "--model=/mnt/models"],
                    "env": [{"name": "HF_HOME", "value": "/tmp/hf_home"}, {"name": "HF_HUB_OFFLINE", "value": "1"}],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
                    "readinessProbe": {"httpGet": {"path": "/v1/models", "port": 8080}, "periodSeconds": 10},
                    "startupProbe": {
                        "httpGet": {"path": "/v1/models", "port": 8080},
                        "periodSeconds": 10,
                        "failureThreshold": 180,
                    },
                }
            ],
        },
    }


# Every verb the rollout (serving/rollout.py) uses, and nothing more: tests/test_deploy.py removes each in
# turn from the Role on a real API server and sees the rollout refused with a 403 naming it.
DEPLOYER_VERBS = ("get", "create", "update", "patch", "delete")


# What each serving API's rollout writes: (API group, resource) pairs.
DEPLOYED_RESOURCES = {
    "inferenceservice": [("serving.kserve.io", "inferenceservices")],
    "llminferenceservice": [
        ("serving.kserve.io", "llminferenceservices"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("apps", "deployments"),
        ("", "services"),
    ],
}


def render_rbac(
    namespace: str,
    *,
    service_account: str = "pipeline-runner",
    serving_api: str = "inferenceservice",
    shadow: bool = False,
    trainjob: bool = False,
) -> list[dict]:
    """What the deploy step's service account may do in ``namespace``: exactly what a rollout on
    ``serving_api`` needs (and, with ``shadow`` on the InferenceService path, the Istio VirtualService that
    mirrors to the shadow; with ``trainjob``, the fine-tune step's TrainJobs)."""
    check_namespace(namespace)
    if serving_api not in DEPLOYED_RESOURCES:
        raise ManifestError(f"unknown serving API {serving_api!r}.", f"choose one of {list(DEPLOYED_RESOURCES)}.")
    role_name = "champion-deployer"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {
                "name": role_name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "champion"},
            },
            "rules": [
                {"apiGroups": [group], "resources": [resource], "verbs": list(DEPLOYER_VERBS)}
                for group, resource in DEPLOYED_RESOURCES[serving_api]
                + ([("networking.istio.io", "virtualservices")] if shadow and serving_api == "inferenceservice" else [])
                + ([("trainer.kubeflow.org", "trainjobs")] if trainjob else [])
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {
                "name": role_name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "champion"},
            },
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
        },
    ]


def _close_objects(schema: dict) -> dict:
    """Forbid unknown keys wherever the schema lists properties and does not ask to keep unknown fields."""
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            _close_objects(value)
    elif isinstance(schema, list):
        for item in schema:
            _close_objects(item)
    return schema


@lru_cache(maxsize=None)
def strict_schema(kind: str = "InferenceService") -> dict:
    if kind not in SCHEMAS:
        raise ManifestError(f"no CRD schema for kind {kind!r}.", f"champion validates {sorted(SCHEMAS)}.")
    schema = copy.deepcopy(json.loads(SCHEMAS[kind][0].read_text()))
    _close_objects(schema)
    # ObjectMeta is validated by the API server itself; the CRD leaves it open and so do we. Some CRDs
    # (Istio's) leave apiVersion and kind out of their schema: every object has them.
    schema["properties"]["metadata"] = {"type": "object"}
    schema["properties"].setdefault("apiVersion", {"type": "string"})
    schema["properties"].setdefault("kind", {"type": "string"})
    return schema


def validation_errors(manifest: dict) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(strict_schema(manifest.get("kind", "InferenceService")))
    return sorted(
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(manifest)
    )


def validate_strict(manifest: dict) -> None:
    errors = validation_errors(manifest)
    if errors:
        kind = manifest.get("kind", "InferenceService")
        raise ManifestError(
            f"the {kind} does not match its CRD schema: " + "; ".join(errors[:10]),
            "fix the fields named (unknown keys are errors: check camelCase spelling).",
        )


def crd_schema(crd_path: str | Path, version: str) -> dict:
    import yaml

    crd = yaml.load(Path(crd_path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


def refresh_schemas(crd_dir: str) -> None:
    for path, crd_file, version in SCHEMAS.values():
        path.write_text(
            json.dumps(crd_schema(Path(crd_dir) / crd_file, version), sort_keys=True, separators=(",", ":"))
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--refresh-schemas":
        refresh_schemas(sys.argv[2])
    else:
        sys.exit(
            "usage: python -m serving.manifests --refresh-schemas PATH_TO_THE_CONTRACT_FILES (holding kserve-crds/, cluster-crds/)"
        )
