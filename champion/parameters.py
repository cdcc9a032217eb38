"""The pipelines' parameters: one typed model per pipeline, the single source of each parameter's name,
type, default, bounds and help text.

The pipeline signatures (``pipelines/promotion.py``, ``pipelines/scheduled_eval.py``), the CLI's
options and defaults, the local runner, the deploy step's settings and the docs' parameter tables (docs/reference/parameters.md, generated)
are all derived from these models. Unknown names are errors with a suggestion, so a typo never
silently falls back to a default.

Images and the weights-cache mount are chosen when the pipeline is compiled (``images/refs.env``,
``CHAMPION_WEIGHTS_PVC``); they enter here as defaults and are fixed in the compiled IR.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from champion.errors import ConfigError, field_problems
from champion.images import image_ref

WEIGHTS_MOUNT = "/mnt/champion-weights"
KUEUE_LABEL = "kueue.x-k8s.io/queue-name"


@dataclass(frozen=True)
class CompileSettings:
    """What a pipeline is compiled with besides its images, read from the environment when a pipeline is
    built (``compile.sh`` / ``champion compile`` set it), never at import.

    ``weights_pvc``: a PersistentVolumeClaim that keeps fetched and converted weights between runs; the weight
    steps mount it at WEIGHTS_MOUNT, which then becomes the weights_cache default. ``kueue_queue``: a Kueue
    LocalQueue for the GPU steps (KFP's pod labels are fixed in the IR, and Kueue admits a pod by its
    ``kueue.x-k8s.io/queue-name`` label). ``otlp_endpoint``: an OpenTelemetry collector every step exports its
    spans to (as OTEL_EXPORTER_OTLP_ENDPOINT, see champion.tracing); unset, the steps export nothing.
    """

    weights_pvc: str = ""
    kueue_queue: str = ""
    otlp_endpoint: str = ""


def compile_settings() -> CompileSettings:
    return CompileSettings(
        weights_pvc=os.environ.get("CHAMPION_WEIGHTS_PVC", ""),
        kueue_queue=os.environ.get("CHAMPION_KUEUE_QUEUE", ""),
        otlp_endpoint=os.environ.get("CHAMPION_OTLP_ENDPOINT", ""),
    )


def _weights_cache_default() -> str:
    return WEIGHTS_MOUNT if compile_settings().weights_pvc else ""


def _transformer_image_default() -> str:
    return image_ref("CPU")


DEFAULT_REGISTERED_MODEL = "champion-qa"
REGISTERED_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Groups order the docs' parameter table and say which part of the pipeline a parameter steers.
SHADOW_MIN_PAIRS = 20  # the shadow gate's min_examples: fewer pairs can never pass

GROUPS = ("data", "model", "fine-tuning", "generation", "evaluation", "registry", "deployment", "cluster")


def _param(
    default: Any, help: str, group: str, *, cli: dict[str, str] | None = None, shown: str | None = None, **bounds: Any
) -> Any:
    """A parameter: its default, help text, group, the options it has on the local commands
    (``{"run": "data"}`` is ``champion run --data``; elsewhere it is ``--param NAME=VALUE``), and how the
    docs show a default that depends on where it is compiled."""
    extra: dict[str, Any] = {"group": group}
    if cli:
        extra["cli"] = cli
    if shown:
        extra["shown"] = shown
    if callable(default):  # read when the model is used (a compile-time setting), not at import
        return Field(default_factory=default, description=help, json_schema_extra=extra, **bounds)
    if isinstance(default, (dict, list)):
        return Field(default_factory=type(default), description=help, json_schema_extra=extra, **bounds)
    return Field(default, description=help, json_schema_extra=extra, **bounds)


class PipelineParameters(BaseModel):
    """What both pipelines take: where the data, weights, evaluators and registry are, and how to use the GPU."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    data_source: str = _param(
        "demo",
        "Evaluation set: a JSONL/CSV/Parquet file or URL, a save_to_disk folder, hf://datasets/NAME, 'demo', or a request log (reference-free).",
        "data",
        cli={"run": "data", "monitor": "data"},
    )
    limit: int = _param(
        0,
        "Evaluate only the first N examples (0 = all); of a request log, a seeded sample of N distinct questions.",
        "data",
        ge=0,
        cli={"run": "limit", "monitor": "limit"},
    )
    weights_cache: str = _param(
        _weights_cache_default,
        "Folder that keeps fetched and converted weights between runs (the PVC mount when compiled with one).",
        "model",
        shown=f'`{WEIGHTS_MOUNT}` with CHAMPION_WEIGHTS_PVC, else `""`',
    )
    trust_remote_code: bool = _param(
        False, "Allow model folders that ship Python code (off: such models are refused).", "model"
    )
    hf_token_secret: str = _param(
        "hf-token", "Kubernetes secret (key 'token') with a Hugging Face token; optional.", "model"
    )
    cache_root: str = _param(
        "",
        "Per-example cache of generations, embeddings and judge verdicts (any fsspec URL; empty = off).",
        "generation",
    )
    generation_backend: Literal["transformers", "vllm"] = _param(
        "transformers", "Generation backend: transformers or vllm.", "generation", cli={"run": "backend"}
    )
    batch_size: int = _param(
        0,
        "Generation batch: the most sequences per batch (0 = up to 256), each batch sized from the device's free "
        "memory (the host's on a CPU) and its prompts.",
        "generation",
        ge=0,
        le=4096,
        cli={"run": "batch_size"},
    )
    shards: int = _param(
        1,
        "Split the evaluation set into this many parts, generated and scored in parallel (one GPU task each) and "
        "merged before the gate; per-example results are the same as unsharded.",
        "generation",
        ge=1,
        le=256,
    )
    tensor_parallel_size: int = _param(
        1, "vLLM: GPUs one model is sharded over (the generation step requests this many).", "generation", ge=1, le=64
    )
    max_num_seqs: int = _param(256, "vLLM: most sequences it schedules at once.", "generation", ge=1, le=16_384)
    gpu_memory_utilization: float = _param(
        0.9, "vLLM: share of GPU memory for weights and KV cache.", "generation", gt=0.0, le=1.0
    )
    context_overflow: Literal["fail", "skip"] = _param(
        "fail",
        "Examples whose prompt does not fit the model's context: 'fail' naming them, or 'skip' and count them.",
        "generation",
        cli={"run": "context_overflow"},
    )
    evaluator_config: str = _param(
        "default",
        "Evaluator config: a name in evaluators/configs/ or a YAML path.",
        "evaluation",
        cli={"run": "evaluator_config", "monitor": "evaluator_config"},
    )
    drift_reference: str = _param(
        "demo", "Reference outputs for the drift report: a JSONL path or 'demo'.", "evaluation"
    )
    gate_config: str = _param(
        "default",
        "Gate policy: a name in evaluators/policies/ or a YAML path.",
        "evaluation",
        cli={"run": "gate_config", "monitor": "gate_config"},
    )
    mlflow_tracking_uri: str = _param(
        "http://mlflow.mlflow.svc.cluster.local:5000", "MLflow tracking URI (server or sqlite).", "registry"
    )
    registered_model_name: str = _param(
        DEFAULT_REGISTERED_MODEL,
        "MLflow registered model that holds the bundles.",
        "registry",
        cli={"run": "registered_model_name"},
    )
    pushgateway_url: str = _param(
        "",
        "Prometheus Pushgateway each run pushes its outcome to (gate decision and intervals; scheduled-evaluation "
        "health and scores); empty = none (locally they go to <workspace>/metrics/*.prom).",
        "cluster",
    )
    accelerator_type: str = _param("nvidia.com/gpu", "Accelerator resource of the GPU steps.", "cluster")
    accelerator_count: int = _param(1, "Accelerators per generation step.", "cluster", ge=0)
    gpu_node_selector: dict = _param({}, "Node selector of the GPU steps (JSON object).", "cluster")
    gpu_tolerations: list = _param([], "Tolerations of the GPU steps (JSON list of Kubernetes tolerations).", "cluster")

    @model_validator(mode="after")
    def _vllm_gets_its_gpus(self) -> PipelineParameters:
        if self.generation_backend == "vllm" and self.accelerator_count != self.tensor_parallel_size:
            raise ValueError(
                f"vLLM shards the model over tensor_parallel_size={self.tensor_parallel_size} GPUs, but the generation "
                f"step requests accelerator_count={self.accelerator_count}; set them equal"
            )
        return self

    @field_validator("registered_model_name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not REGISTERED_MODEL_NAME.match(name):
            raise ValueError(
                f"{name!r} is not a plain name (letters, digits, '.', '_', '-'); quotes and spaces would break MLflow's search filters"
            )
        return name


class DeploySettings(BaseModel):
    """Where and how a promoted bundle is served: the deploy step's settings, in one model.

    The promotion pipeline's signature, ``champion run --param``, ``deploy_op``'s parameters (tested equal to
    these fields) and the rollout (``serving.deploy.deploy_bundle``) all take these names.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    service_name: str = _param(DEFAULT_REGISTERED_MODEL, "InferenceService name.", "deployment")
    namespace: str = _param("kubeflow-user-example-com", "Namespace the InferenceService lives in.", "deployment")
    storage_uri: str = _param(
        "pvc://champion-models/{model_digest}",
        "Where the predictor reads weights ({model_digest} is filled in).",
        "deployment",
    )
    serving_runtime: str = _param("huggingface-vllm", "KServe ServingRuntime of the predictor.", "deployment")
    deployment_mode: Literal["Serverless", "Standard"] = _param("Serverless", "KServe deployment mode.", "deployment")
    deploy_target: Literal["kserve", "none"] = _param(
        "kserve", "'kserve': apply to the cluster; 'none': render and validate only.", "deployment"
    )
    canary_traffic_percent: int = _param(
        10, "Share of traffic the canary gets before the smoke test.", "deployment", ge=0, le=100
    )
    min_replicas: int = _param(
        1, "Fewest predictor replicas (0 lets Serverless mode scale to zero).", "deployment", ge=0, le=1000
    )
    max_replicas: int = _param(1, "Most predictor replicas the autoscaler may start.", "deployment", ge=1, le=1000)
    scale_metric: Literal["concurrency", "rps", "cpu", "memory"] = _param(
        "concurrency", "What the predictor's autoscaler scales on (Standard mode: cpu or memory).", "deployment"
    )
    scale_target: int = _param(
        1, "Target value of the scale metric per replica (requests, or percent for cpu/memory).", "deployment", ge=1
    )
    ready_timeout_s: float = _param(
        900.0, "Seconds to wait for the InferenceService to be Ready.", "deployment", ge=1.0, le=86_400.0
    )
    smoke_examples: int = _param(
        5, "Evaluation examples sent through the canary's route.", "deployment", ge=0, le=10_000
    )
    smoke_min_token_f1: float = _param(
        0.1, "Smoke test: the canary's mean token F1 must reach this.", "deployment", ge=0.0, le=1.0
    )
    transformer_image: str = _param(
        _transformer_image_default,
        "Image of the prompt transformer (the CPU image).",
        "deployment",
        shown="the CPU image of images/refs.env",
    )
    service_account: str = _param(
        "", "Service account of the InferenceService's pods (empty = namespace default).", "deployment"
    )
    serving_api: Literal["inferenceservice", "llminferenceservice"] = _param(
        "inferenceservice",
        "KServe API that serves the bundle: an InferenceService (vLLM + prompt transformer) or an "
        "LLMInferenceService (llm-d) behind champion's prompt router and an HTTPRoute.",
        "deployment",
    )
    llm_gateway: str = _param(
        "kserve/kserve-ingress-gateway",
        "LLM API: NAMESPACE/NAME of the Gateway the front HTTPRoute attaches to.",
        "deployment",
    )
    llm_gateway_host: str = _param(
        "kserve-ingress-gateway-istio.kserve.svc.cluster.local",
        "LLM API: in-cluster address of that Gateway, where the prompt routers reach the models.",
        "deployment",
    )
    llm_autoscaler: Literal["keda", "hpa"] = _param(
        "keda",
        "LLM API: what scales the model between min_replicas and max_replicas (llm-d's variant autoscaler).",
        "deployment",
    )
    request_log_url: str = _param(
        "",
        "CloudEvents sink for the served requests' records (`python -m serving.log_sink`; empty = none).",
        "deployment",
    )
    log_content: bool = _param(
        False, "Record questions and answers in the request log (redacted; the shadow stage needs it).", "deployment"
    )
    shadow_requests: int = _param(
        0,
        "Shadow stage before the canary: mirrored requests to judge (0 = no shadow stage; at least 20).",
        "deployment",
        ge=0,
        le=100_000,
    )
    shadow_timeout_s: float = _param(
        3600.0,
        "Shadow stage: judge what was mirrored after this long, even if fewer requests came.",
        "deployment",
        ge=1.0,
        le=7 * 86_400.0,
    )
    shadow_margin: float = _param(
        0.1,
        "Shadow stage: non-inferiority margin on the judge's preference for the candidate (0..1).",
        "deployment",
        ge=0.0,
        le=1.0,
    )

    @model_validator(mode="after")
    def _shadow_needs_its_records(self) -> DeploySettings:
        if self.shadow_requests == 0:
            return self
        if self.shadow_requests < SHADOW_MIN_PAIRS:
            raise ValueError(
                f"shadow_requests={self.shadow_requests} is under the shadow gate's minimum of {SHADOW_MIN_PAIRS} pairs; "
                "pass 0 (no shadow stage) or at least that many"
            )
        if not self.request_log_url or not self.log_content:
            raise ValueError(
                "the shadow stage pairs the live and the candidate's logged answers: set request_log_url to the "
                "log sink and log_content=true, or shadow_requests=0"
            )
        return self


class PromotionRun(PipelineParameters):
    """The promotion pipeline before deployment: the challenger, its fine-tuning, prompt and registry settings."""

    eval_fraction: float = _param(
        1.0,
        "Share of the data kept for evaluation; the rest is the fine-tuning split.",
        "data",
        gt=0.0,
        le=1.0,
        cli={"run": "eval_fraction"},
    )
    seed: int = _param(0, "Seed of the split and of fine-tuning.", "data")
    model_source: str = _param(
        "smollm2",
        "Model: 'smollm2' (packaged), a folder, a .gguf file, hf://org/name, s3://…, gs://….",
        "model",
        cli={"run": "model"},
    )
    fine_tune_steps: int = _param(
        0,
        "LoRA fine-tuning steps before evaluating (0 = weights as fetched).",
        "fine-tuning",
        ge=0,
        le=1_000_000,
        cli={"run": "fine_tune_steps"},
    )
    fine_tune_learning_rate: float = _param(2e-4, "LoRA learning rate.", "fine-tuning", gt=0.0, le=1.0)
    lora_rank: int = _param(8, "LoRA rank.", "fine-tuning", ge=1, le=1024)
    merge_adapter: bool = _param(True, "Merge the adapter into the weights (off: serve base + adapter).", "fine-tuning")
    trainer: Literal["local", "trainjob"] = _param(
        "local",
        "Where fine-tuning runs: 'local' (in the step's pod) or 'trainjob' (a Kubeflow Trainer v2 TrainJob over "
        "trainjob_nodes nodes; needs the weights PVC, and fine_tune_gpu_count=0 for the waiting step).",
        "fine-tuning",
    )
    trainjob_nodes: int = _param(1, "TrainJob: nodes.", "fine-tuning", ge=1, le=1024)
    trainjob_gpus_per_node: int = _param(1, "TrainJob: GPUs (and training processes) per node.", "fine-tuning", ge=0)
    trainjob_runtime: str = _param(
        "torch-distributed", "TrainJob: the ClusterTrainingRuntime it runs on.", "fine-tuning"
    )
    trainjob_timeout_s: float = _param(
        86_400.0, "TrainJob: seconds to wait for it to complete.", "fine-tuning", ge=60.0, le=30 * 86_400.0
    )
    fine_tune_4bit: bool = _param(
        False,
        "QLoRA: load the base in 4 bits (bitsandbytes, on a GPU); the adapter is then kept, never merged.",
        "fine-tuning",
    )
    fine_tune_gpu_count: int = _param(0, "Accelerators for the fine-tune step.", "fine-tuning", ge=0)
    prompt: str = _param(
        "qa-concise",
        "Prompt: NAME, NAME@VERSION (prompts/), a YAML path, or a prompt as JSON.",
        "generation",
        cli={"run": "prompt"},
    )
    audit_log: str = _param("", "Append-only audit log (a path or fsspec URL; empty = next to MLflow).", "registry")
    allow_bootstrap: bool = _param(
        False,
        "Allow the floors-only rule although a champion existed before and its alias is gone.",
        "registry",
        cli={"run": "bootstrap"},
    )
    promote: bool = _param(
        True, "Deploy a passing bundle and make it the champion (off: gate only).", "registry", cli={"run": "promote"}
    )
    fail_on_reject: bool = _param(False, "Fail the run when the gate rejects the bundle (a CI check).", "registry")
    look: int = _param(
        1,
        "A sequential policy's look this run decides at: the challenger is scored on that look's first examples "
        "(champion run runs looks 1, 2, … until the gate decides; a fixed-n policy has one look).",
        "evaluation",
        ge=1,
    )

    @model_validator(mode="after")
    def _shards_score_fetched_weights(self) -> PromotionRun:
        if self.shards > 1 and self.fine_tune_steps > 0:
            raise ValueError(
                "shards > 1 with fine_tune_steps > 0 would fine-tune once per shard (the scoring loop runs per shard); "
                "fine-tune in its own run (shards=1), then evaluate the tuned weights with shards"
            )
        return self

    @model_validator(mode="after")
    def _a_trainjob_step_only_waits(self) -> PromotionRun:
        if self.trainer == "trainjob" and self.fine_tune_gpu_count > 0:
            raise ValueError(
                "with trainer=trainjob the fine-tune step only submits and waits; its GPUs would sit idle: set "
                "fine_tune_gpu_count=0 and the job's GPUs with trainjob_gpus_per_node"
            )
        return self


class PromotionParameters(DeploySettings, PromotionRun):
    """The promotion pipeline: evaluate a challenger bundle against the champion, gate, register, deploy.
    Its fields are PromotionRun's, then DeploySettings' (the pipeline's inputs in that order)."""


class ScheduledEvalParameters(PipelineParameters):
    """The scheduled evaluation: the live champion on the latest data, compared with its last evaluation."""

    webhook_url: str = _param(
        "",
        "POST an alert here (Slack-compatible JSON) when the champion regresses.",
        "registry",
        cli={"monitor": "webhook_url"},
    )


def did_you_mean(name: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def parse(model: type[BaseModel], values: dict[str, Any], *, where: str = "parameter") -> Any:
    """Build ``model`` from ``values``: unknown names and bad values are one ConfigError naming each."""
    unknown = [key for key in values if key not in model.model_fields]
    if unknown:
        raise ConfigError(
            "; ".join(f"unknown {where} {key!r}.{did_you_mean(key, model.model_fields)}" for key in unknown),
            f"the {model.__name__} are: {', '.join(model.model_fields)}.",
        )
    try:
        return model(**values)
    except ValidationError as exc:
        problems = field_problems(exc, with_input=True, prefix=f"{where} ")
        raise ConfigError(
            problems, "see `champion run --help` or the parameter reference (docs/reference/parameters.md)."
        ) from None


def kfp_type(annotation: Any) -> type:
    """The plain type KFP accepts for a parameter (a Literal of strings is a str)."""
    if typing.get_origin(annotation) is Literal:
        return type(typing.get_args(annotation)[0])
    if isinstance(annotation, types.GenericAlias):
        return typing.get_origin(annotation)
    return annotation


def help_text(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    annotation = field.annotation
    choices = f" One of: {', '.join(typing.get_args(annotation))}." if typing.get_origin(annotation) is Literal else ""
    return (field.description or "") + choices


def default(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].get_default(call_default_factory=True)


def _extra(model: type[BaseModel], name: str) -> dict[str, Any]:
    """What ``_param`` recorded beside the default and help: group, CLI options, how the docs show it."""
    extra = model.model_fields[name].json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}


def group(model: type[BaseModel], name: str) -> str:
    return str(_extra(model, name).get("group", ""))


def cli_flag(model: type[BaseModel], name: str, command: str) -> str | None:
    """The option of ``champion <command>`` that sets ``name``, if it has one of its own."""
    flag = (_extra(model, name).get("cli") or {}).get(command)
    return f"--{str(flag).replace('_', '-')}" if flag else None


def markdown_table(model: type[BaseModel], command: str) -> str:
    """The docs' table of a pipeline's parameters, in group order, with ``champion <command>``'s options."""
    import json

    lines = [f"| parameter | type | default | `champion {command}` | what it does |", "|---|---|---|---|---|"]
    names = sorted(model.model_fields, key=lambda n: (GROUPS.index(group(model, n)), list(model.model_fields).index(n)))
    for name in names:
        field = model.model_fields[name]
        extra = _extra(model, name)
        value = default(model, name)
        shown = extra.get("shown") or (
            f"`{json.dumps(value)}`" if not isinstance(value, str) else f"`{value}`" if value else '`""`'
        )
        flag = cli_flag(model, name, command)
        cli = f"`{flag}`" if flag else f"`--param {name}=…`"
        lines.append(
            f"| `{name}` | {kfp_type(field.annotation).__name__} | {shown} | {cli} | {help_text(model, name)} |"
        )
    return "\n".join(lines) + "\n"
