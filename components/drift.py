"""drift: an Evidently report of the current outputs against a reference (the champion's outputs or a reference set)."""

from pathlib import Path

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components import cpu_step

VERSION = "1.0.0"
DEMO_REFERENCE = Path(__file__).resolve().parent.parent / "pipelines" / "data" / "demo_reference_outputs.jsonl"


def load_reference(source: str, current_ids: set[str]) -> list[dict]:
    """``demo`` is the packaged baseline outputs; otherwise a JSONL path or fsspec URL with ``output`` and ``reference``.

    When the reference covers the current examples, only those are compared, so a ``--limit`` run is
    not measured against answers to questions it never asked.
    """
    import fsspec

    from champion.errors import DataError

    path = str(DEMO_REFERENCE) if source == "demo" else source
    try:
        with fsspec.open(path, "r", encoding="utf-8") as handle:
            import json

            rows = [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the drift reference {source}: {exc}", "pass a JSONL file with 'output' and 'reference' columns, or 'demo'.") from exc
    missing = [i for i, row in enumerate(rows, 1) if not isinstance(row.get("output"), str) or not isinstance(row.get("reference"), str)]
    if missing:
        raise DataError(f"drift reference {source}, row {missing[0]}: needs text 'output' and 'reference'.", "fix or regenerate the reference file.")
    overlap = [row for row in rows if row.get("id") in current_ids]
    return overlap if len(overlap) >= 2 else rows


@cpu_step
def drift_op(
    generations: Input[Dataset],
    drift_reference: str,
    report: Output[HTML],
    report_json: Output[Artifact],
    metrics: Output[Metrics],
):
    """drift v1.0.0: Evidently drift report of the outputs against the champion's outputs or a reference set."""
    import math

    from champion.jsonl import read_jsonl
    from components.drift import load_reference
    from evaluators.drift import drift_report

    current = read_jsonl(generations.path)
    result = drift_report(current, load_reference(drift_reference, {row["id"] for row in current}))
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(result.html)
    with open(report_json.path, "w", encoding="utf-8") as handle:
        handle.write(result.json)
    for name, value in result.summary.items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            metrics.log_metric(f"drift_{name}", float(value))
