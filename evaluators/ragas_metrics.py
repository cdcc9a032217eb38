"""ragas' non-LLM metrics (BLEU, ROUGE-L, chrF, string similarity), in our evaluator interface.

Semantic similarity is not taken from ragas: ``evaluators.semantic`` computes the same cosine with
the same local embeddings, once.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import types
from typing import Sequence

from champion.errors import EvaluationError
from evaluators.base import MetricSpec


def import_ragas():
    """Import ragas offline. ragas 0.4.3 imports a module langchain-community 0.4 no longer has
    (ragas issues #2741/#2995); the stub stands in for the class ragas only uses in isinstance checks."""
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    try:
        module = importlib.import_module("langchain_community.chat_models.vertexai")
        getattr(module, "ChatVertexAI")
    except (ImportError, AttributeError):
        stub = types.ModuleType("langchain_community.chat_models.vertexai")
        stub.ChatVertexAI = type("ChatVertexAI", (), {"__doc__": "stub: see evaluators.ragas_metrics"})
        sys.modules["langchain_community.chat_models.vertexai"] = stub
    try:
        return importlib.import_module("ragas.metrics.collections")
    except ImportError as exc:
        raise EvaluationError(f"ragas metrics need ragas and its scorers: {exc}", "pip install 'ragas==0.4.3' sacrebleu rouge-score rapidfuzz lxml") from exc


class RagasMetric:
    """One ragas collections metric scored on (reference, response) pairs."""

    _FACTORIES = {
        "ragas_bleu": lambda m: m.BleuScore(),
        "ragas_rouge_l": lambda m: m.RougeScore(rouge_type="rougeL", mode="fmeasure"),
        "ragas_chrf": lambda m: m.CHRFScore(),
        "ragas_string_similarity": lambda m: m.NonLLMStringSimilarity(),
    }

    def __init__(self, name: str) -> None:
        if name not in self._FACTORIES:
            raise EvaluationError(f"unknown ragas metric {name!r}.", f"choose one of {sorted(self._FACTORIES)}.")
        self.spec = MetricSpec(name, "higher", 0.0, 1.0)
        self._metric = self._FACTORIES[name](import_ragas())

    def score(self, records: Sequence[dict]) -> list[float]:
        pairs = [{"reference": r["reference"], "response": r["output"]} for r in records]
        values = []
        for result in self._metric.batch_score(pairs):
            value = result.value
            values.append(float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan)
        return values
