"""Drift of the current outputs against a reference: the champion's outputs or a reference set.

An Evidently report over text descriptors (length, word count, sentiment, similarity to the
reference answer) with drift tests, saved as a self-contained HTML page (shown in the Kubeflow UI)
and as JSON. Sentiment uses the VADER lexicon shipped in evaluators/nltk_data: nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from champion.errors import DataError, EvaluationError
from evaluators.semantic import SemanticSimilarity

NLTK_DATA = Path(__file__).resolve().parent / "nltk_data"
DESCRIPTOR_COLUMNS = ["answer_length", "word_count", "sentiment", "similarity_to_reference"]


def _offline_nltk() -> None:
    os.environ["NLTK_DATA"] = str(NLTK_DATA) + (
        os.pathsep + os.environ["NLTK_DATA"] if os.environ.get("NLTK_DATA") else ""
    )
    import nltk

    if str(NLTK_DATA) not in nltk.data.path:
        nltk.data.path.insert(0, str(NLTK_DATA))
    nltk.download = lambda *args, **kwargs: True  # the data is shipped; a download attempt would hit the network


@dataclass
class DriftResult:
    html: str
    json: str
    drifted_share: float
    tests_failed: int
    tests_total: int
    summary: dict


def drift_report(current: Sequence[dict], reference: Sequence[dict], *, semantic=None) -> DriftResult:
    """Rows need ``output`` and ``reference`` (the expected answer). ``semantic`` is a SemanticSimilarity to reuse.

    Logged traffic has no references (``reference`` empty): its answers to real prompts are compared on length,
    word count and sentiment only; similarity to the reference is not measured rather than measured against
    nothing."""
    if len(current) < 2 or len(reference) < 2:
        raise EvaluationError(
            f"drift needs at least 2 rows on each side, got {len(current)} current and {len(reference)} reference.",
            "evaluate more examples.",
        )
    _offline_nltk()
    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.core.datasets import DatasetColumn
    from evidently.descriptors import CustomDescriptor, Sentiment, TextLength, WordCount
    from evidently.legacy.core import ColumnType
    from evidently.presets import DataDriftPreset

    semantic = semantic or SemanticSimilarity()

    def similarity(dataset) -> DatasetColumn:
        # Evidently's own SemanticSimilarity hands a pandas Series to sentence-transformers 6, which rejects it.
        outputs = dataset.column("answer").data.fillna("").tolist()
        references = dataset.column("reference").data.fillna("").tolist()
        values = semantic.score([{"output": o, "reference": r} for o, r in zip(outputs, references)])
        return DatasetColumn(
            type=ColumnType.Numerical, data=pd.Series(np.asarray(values), index=dataset.column("answer").data.index)
        )

    referenced = all(row.get("reference") for row in current)
    columns = DESCRIPTOR_COLUMNS if referenced else [c for c in DESCRIPTOR_COLUMNS if c != "similarity_to_reference"]

    def descriptors():
        return [
            TextLength("answer", alias="answer_length"),
            WordCount("answer", alias="word_count"),
            Sentiment("answer", alias="sentiment"),
        ] + ([CustomDescriptor(similarity, alias="similarity_to_reference")] if referenced else [])

    definition = DataDefinition(text_columns=["answer", "reference"])

    def to_dataset(rows):
        frame = pd.DataFrame({"answer": [r["output"] for r in rows], "reference": [r["reference"] for r in rows]})
        return Dataset.from_pandas(frame, data_definition=definition, descriptors=descriptors())

    snapshot = Report([DataDriftPreset(columns=columns)], include_tests=True).run(
        current_data=to_dataset(current), reference_data=to_dataset(reference)
    )
    result = snapshot.dict()
    tests = result.get("tests", [])
    failed = sum(1 for t in tests if str(t.get("status", "")).upper().endswith("FAIL"))
    drifted = next(
        (m["value"] for m in result["metrics"] if "DriftedColumnsCount" in m.get("metric_name", "")),
        {"share": float("nan")},
    )
    share = float(drifted["share"]) if isinstance(drifted, dict) else float("nan")
    return DriftResult(
        html=snapshot.get_html_str(as_iframe=False),
        json=snapshot.json(),
        drifted_share=share,
        tests_failed=failed,
        tests_total=len(tests),
        summary={
            "drifted_share": share,
            "tests_failed": failed,
            "tests_total": len(tests),
            "similarity_measured": 1.0 if referenced else 0.0,
        },
    )


DEMO_REFERENCE = Path(__file__).resolve().parent.parent / "pipelines" / "data" / "demo_reference_outputs.jsonl"


def load_reference(source: str, current_ids: set[str]) -> list[dict]:
    """``demo`` is the packaged baseline outputs; otherwise a JSONL path or fsspec URL with ``output`` and ``reference``.

    When the reference covers the current examples, only those are compared, so a ``--limit`` run is
    not measured against answers to questions it never asked.
    """
    import fsspec

    path = str(DEMO_REFERENCE) if source == "demo" else source
    try:
        with fsspec.open(path, "r", encoding="utf-8") as handle:
            import json

            rows = [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read the drift reference {source}: {exc}",
            "pass a JSONL file with 'output' and 'reference' columns, or 'demo'.",
        ) from exc
    missing = [
        i
        for i, row in enumerate(rows, 1)
        if not isinstance(row.get("output"), str) or not isinstance(row.get("reference"), str)
    ]
    if missing:
        raise DataError(
            f"drift reference {source}, row {missing[0]}: needs text 'output' and 'reference'.",
            "fix or regenerate the reference file.",
        )
    overlap = [row for row in rows if row.get("id") in current_ids]
    return overlap if len(overlap) >= 2 else rows
