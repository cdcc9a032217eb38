"""The HTML gate report: decision, reasons, metric table, and every example side by side."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import jinja2

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,  # model outputs are untrusted text
    undefined=jinja2.StrictUndefined,
)


def _fmt(value, signed: bool = False) -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def gate_html(record: dict, challenger_rows: Sequence[dict], champion_rows: Sequence[dict] | None, primary: str, judge_metric: str = "judge_correctness") -> str:
    champion_by_id = {row["id"]: row for row in champion_rows or []}
    rows = []
    for row in challenger_rows:
        champion = champion_by_id.get(row["id"], {})
        score, champion_score = row.get(primary), champion.get(primary)
        delta = score - champion_score if isinstance(score, (int, float)) and isinstance(champion_score, (int, float)) else None
        rows.append({
            "id": row["id"], "question": row.get("question", ""), "reference": row.get("reference", ""), "output": row.get("output", ""),
            "champion_output": champion.get("output", ""), "score": score, "champion_score": champion_score, "delta": delta,
            "judge_verdict": row.get(f"{judge_metric}_verdict"), "judge_rationale": row.get(f"{judge_metric}_rationale"),
            "css": "" if delta is None or abs(delta) < 0.05 else ("worse" if delta < 0 else "better"),
        })
    rows.sort(key=lambda r: (r["delta"] if r["delta"] is not None and math.isfinite(r["delta"]) else math.inf, r["id"]))
    judge = any(r["judge_verdict"] is not None for r in rows)
    return _TEMPLATES.get_template("gate_report.html.j2").render(record=record, rows=rows, champion_rows=bool(champion_rows), primary=primary, judge=judge, fmt=_fmt)
