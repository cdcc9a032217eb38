"""The versioned evaluator configuration, and building evaluators from it."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from champion.config import load_versioned_yaml
from champion.digests import sha256_json
from champion.errors import ConfigError
from evaluators import catalog
from evaluators.catalog import MetricInfo

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
BUILTIN_METRICS = ("semantic_similarity", "exact_match", "token_f1")
RAGAS_METRICS = ("ragas_bleu", "ragas_rouge_l", "ragas_chrf", "ragas_string_similarity")
RAGAS_LLM_METRICS = ("ragas_answer_accuracy", "ragas_faithfulness")  # need the judge backend
KNOWN_METRICS = tuple(catalog.BUILTIN)  # the catalogue is the one list; the groups above say how each is built


class Reliability(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_swap_consistency: float = Field(0.8, ge=0.0, le=1.0)
    min_calibration_accuracy: float = Field(0.8, ge=0.0, le=1.0)


class JudgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    pointwise_rubric: str = "correctness"
    pairwise_rubric: str = "pairwise-correctness"
    max_repairs: int = Field(1, ge=0, le=3)
    reliability: Reliability = Reliability()


class EvaluatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int = Field(ge=1)
    embedding_model: str = "packaged"
    metrics: tuple[str, ...] = Field(min_length=1)
    judge: JudgeConfig | None = None

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
        if self.judge is not None:
            from prompts import load_rubric

            grade = catalog.judge_metric(load_rubric(self.judge.pointwise_rubric).name)
            found[grade.name] = grade
            if (
                self.judge.backend == "openai"
            ):  # endpoints report tokens per call; the log-probability judges make one forward pass
                found[catalog.JUDGE_COST.name] = catalog.JUDGE_COST
        return found | catalog.GENERATION


def load_evaluator_config(ref: str) -> EvaluatorConfig:
    """A packaged config by name (``default``) or a path to a YAML file."""
    return load_versioned_yaml(ref, EvaluatorConfig, CONFIGS_DIR, "evaluator config")


def build_metrics(config: EvaluatorConfig, judge_generator=None, cache=None) -> list:
    """The evaluators a config names, each constructed once. LLM-based ones use ``judge_generator``;
    ``cache`` (a champion.cache.ExampleCache) keeps embeddings between runs."""
    from evaluators.lexical import ExactMatch, TokenF1
    from evaluators.ragas_metrics import RagasLLMMetric, RagasMetric
    from evaluators.semantic import SemanticSimilarity

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
    return built
