"""ragas metrics in our evaluator interface.

Non-LLM: BLEU, ROUGE-L, chrF, string similarity. LLM-based: answer accuracy, and faithfulness when
the examples carry a ``context``; they run on the same judge backend as our own judge (a local
model, vLLM, or an OpenAI-compatible endpoint). Semantic similarity is not taken from ragas:
``evaluators.semantic`` computes the same cosine with the same local embeddings, once.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import math
import os
import re
import sys
import types
from typing import Sequence

from champion.errors import ChampionError, EvaluationError
from evaluators.base import MetricSpec
from prompts import Decoding


def import_ragas():
    """Import ragas offline. ragas 0.4.3 imports a module langchain-community 0.4 no longer has
    (ragas issues #2741/#2995); the stub stands in for the class ragas only uses in isinstance checks."""
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    try:
        module = importlib.import_module("langchain_community.chat_models.vertexai")
        getattr(module, "ChatVertexAI")
    except (ImportError, AttributeError):
        stub = types.ModuleType("langchain_community.chat_models.vertexai")
        # A module made here, so its attribute is set here (mypy cannot know ModuleType attributes).
        stub.ChatVertexAI = type("ChatVertexAI", (), {"__doc__": "stub: see evaluators.ragas_metrics"})  # type: ignore[attr-defined]
        sys.modules["langchain_community.chat_models.vertexai"] = stub
    try:
        return importlib.import_module("ragas.metrics.collections")
    except ImportError as exc:
        raise EvaluationError(
            f"ragas metrics need ragas and its scorers: {exc}",
            "pip install 'ragas==0.4.3' sacrebleu rouge-score rapidfuzz lxml",
        ) from exc


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
        # rouge-score builds a scorer per pair and logs "Using default tokenizer." (absl, INFO) each time:
        # hundreds of lines per evaluate step. Its logger says nothing else of use.
        logging.getLogger("absl").setLevel(logging.WARNING)
        pairs = [{"reference": r["reference"], "response": r["output"]} for r in records]
        values = []
        for result in self._metric.batch_score(pairs):
            value = result.value
            values.append(float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan)
        return values


def ragas_llm(generator, decoding=None):
    """Our Generator as the instructor-style LLM ragas' collections metrics expect: the reply's last
    JSON object is validated against the metric's response model; anything else raises, and ragas
    retries, then scores NaN."""
    import_ragas()
    from ragas.llms import InstructorBaseRagasLLM

    settings = decoding or Decoding(temperature=0.0, max_tokens=64)

    class GeneratorRagasLLM(InstructorBaseRagasLLM):
        backend_error: ChampionError | None = None  # set when the judge backend itself failed (401, unreachable)

        def generate(self, prompt, response_model):
            try:
                text = generator.generate([[{"role": "user", "content": prompt}]], settings)[0].text
            except ChampionError as exc:
                # ragas would retry and then score NaN; a judge that cannot be reached is an error of the step, never a score.
                GeneratorRagasLLM.backend_error = exc
                raise
            objects = re.findall(r"\{[^{}]*\}", text, re.S)
            if not objects:
                raise ValueError(f"no JSON object in the judge's reply: {text[:120]!r}")
            return response_model.model_validate(json.loads(objects[-1]))

        async def agenerate(self, prompt, response_model):
            return await asyncio.to_thread(self.generate, prompt, response_model)

    return GeneratorRagasLLM()


class RagasLLMMetric:
    """An LLM-based ragas metric driven by a judge generator. A failed or unparseable judgement is NaN."""

    NAMES = ("ragas_answer_accuracy", "ragas_faithfulness")

    def __init__(self, name: str, generator) -> None:
        if name not in self.NAMES:
            raise EvaluationError(f"unknown LLM-based ragas metric {name!r}.", f"choose one of {list(self.NAMES)}.")
        module = import_ragas()
        llm = self._llm = ragas_llm(generator)
        self.spec = MetricSpec(name, "higher", 0.0, 1.0)
        self._metric = (
            module.AnswerAccuracy(llm=llm, max_retries=2)
            if name == "ragas_answer_accuracy"
            else module.Faithfulness(llm=llm)
        )

    def score(self, records: Sequence[dict]) -> list[float]:
        return [self._score_one(r) for r in records]

    def _score_one(self, record: dict) -> float:
        try:
            if self.spec.name == "ragas_faithfulness":
                if not record.get("context"):
                    return math.nan  # faithfulness is defined against a context; without one there is nothing to check
                result = asyncio.run(
                    self._metric.ascore(
                        user_input=record["question"], response=record["output"], retrieved_contexts=[record["context"]]
                    )
                )
            else:
                result = asyncio.run(
                    self._metric.ascore(
                        user_input=record["question"], response=record["output"], reference=record["reference"]
                    )
                )
        except Exception:  # ragas raises on empty inputs and on judges that never answer in JSON
            result = None
        self._raise_if_the_judge_failed()
        value = getattr(result, "value", None)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan

    def _raise_if_the_judge_failed(self) -> None:
        """ragas retries and swallows errors; a judge that cannot be reached (401, down) is an error of the step, never NaN."""
        failure = type(self._llm).backend_error
        if failure is not None:
            raise EvaluationError(
                f"{self.spec.name}: the judge backend failed: {failure.problem}",
                failure.fix or "check the judge endpoint and its credentials; no score was produced.",
            )
