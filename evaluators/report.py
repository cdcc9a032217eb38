"""The HTML gate report: decision, reasons, metric table, and every example side by side."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import jinja2
import markupsafe

from evaluators.gate import format_number
from evaluators.reliability import review_items

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,  # model outputs are untrusted text
    undefined=jinja2.StrictUndefined,
)


_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#bc4c00", "excluded": "#9a6700"}


def forest_svg(checks: Sequence[dict], width: int = 980, row_height: int = 30) -> str:
    """Each comparison's interval against its margin (and 0), and each floor check's mean against its
    floor, as one inline SVG: a forest plot with its own axis per row (metrics have different units)."""
    from html import escape

    rows = [
        c
        for c in checks
        if (c.get("test") in ("non-inferiority", "superiority") and c.get("ci_low") is not None)
        or (c.get("test") == "floor" and c.get("value") is not None)
    ]
    if not rows:
        return ""
    label_w, plot_x0, plot_x1 = 300, 310, width - 250
    height = row_height * len(rows) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="forest" role="img" aria-label="intervals against margins and floors" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="12">',
        f'<text x="{plot_x0}" y="14" fill="#57606a">difference challenger − champion (dashed: margin, grey: 0) · mean vs floor (dashed)</text>',
    ]
    for index, c in enumerate(rows):
        y = 34 + index * row_height
        colour = _COLOURS.get(c.get("status", "pass"), "#57606a")
        relative = c.get("scale") == "relative"
        if c["test"] == "floor":
            points = [c["value"], c["threshold"]]
        else:
            points = [c["ci_low"], c["ci_high"], c["difference"], c["threshold"], 0.0]
        low, high = min(points), max(points)
        pad = (high - low) * 0.15 or 0.05
        low, high = low - pad, high + pad

        def x(value: float) -> float:
            return plot_x0 + (value - low) / (high - low) * (plot_x1 - plot_x0)

        label = f"{c['metric']}" + (f" [{c['slice']}]" if c.get("slice") else "") + f" · {c['test']}"
        parts.append(f'<text x="{label_w}" y="{y + 4}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<line x1="{plot_x0}" x2="{plot_x1}" y1="{y}" y2="{y}" stroke="#eaeef2"/>')
        scale = "relative" if relative else "difference"

        def fmt(value: float) -> str:
            return format_number(value, True, scale)

        if c["test"] == "floor":
            parts.append(
                f'<line x1="{x(c["threshold"]):.1f}" x2="{x(c["threshold"]):.1f}" y1="{y - 10}" y2="{y + 10}" stroke="#57606a" stroke-dasharray="3,2"/>'
            )
            parts.append(
                f'<circle cx="{x(c["value"]):.1f}" cy="{y}" r="5" fill="{colour}"><title>mean {c["value"]:.3f}, floor {c["threshold"]:.3f}</title></circle>'
            )
            summary = f"{c['value']:.3f} vs floor {c['threshold']:.3f}"
        else:
            parts.append(f'<line x1="{x(0.0):.1f}" x2="{x(0.0):.1f}" y1="{y - 11}" y2="{y + 11}" stroke="#8c959f"/>')
            parts.append(
                f'<line class="margin" x1="{x(c["threshold"]):.1f}" x2="{x(c["threshold"]):.1f}" y1="{y - 11}" y2="{y + 11}" stroke="#cf222e" stroke-dasharray="4,3"/>'
            )
            parts.append(
                f'<line class="interval" x1="{x(c["ci_low"]):.1f}" x2="{x(c["ci_high"]):.1f}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="3"/>'
            )
            parts.append(
                f'<rect x="{x(c["difference"]) - 4:.1f}" y="{y - 4}" width="8" height="8" fill="{colour}"><title>{fmt(c["difference"])} [{fmt(c["ci_low"])}, {fmt(c["ci_high"])}], margin at {fmt(c["threshold"])}</title></rect>'
            )
            summary = f"{fmt(c['difference'])} [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"
        parts.append(
            f'<text x="{plot_x1 + 8}" y="{y + 4}" fill="{colour}">{escape(c.get("status", ""))} {escape(summary)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def gate_html(
    record: dict,
    challenger_rows: Sequence[dict],
    champion_rows: Sequence[dict] | None,
    primary: str,
    judge_metric: str = "judge_correctness",
) -> str:
    champion_by_id = {row["id"]: row for row in champion_rows or []}
    rows = []
    for row in challenger_rows:
        champion = champion_by_id.get(row["id"], {})
        score, champion_score = row.get(primary), champion.get(primary)
        delta = (
            score - champion_score
            if isinstance(score, (int, float)) and isinstance(champion_score, (int, float))
            else None
        )
        rows.append(
            {
                "id": row["id"],
                "question": row.get("question", ""),
                "reference": row.get("reference", ""),
                "output": row.get("output", ""),
                "champion_output": champion.get("output", ""),
                "score": score,
                "champion_score": champion_score,
                "delta": delta,
                "judge_verdict": row.get(f"{judge_metric}_verdict"),
                "judge_rationale": row.get(f"{judge_metric}_rationale"),
                "css": "" if delta is None or abs(delta) < 0.05 else ("worse" if delta < 0 else "better"),
            }
        )
    rows.sort(key=lambda r: (r["delta"] if r["delta"] is not None and math.isfinite(r["delta"]) else math.inf, r["id"]))
    judge = any(r["judge_verdict"] is not None for r in rows)
    forest = forest_svg(record["checks"])
    slices = sorted({c["slice"] for c in record["checks"] if c.get("slice")})
    slice_rows = [{"tag": tag, "checks": [c for c in record["checks"] if c.get("slice") == tag]} for tag in slices]

    review = review_items(challenger_rows, champion_rows) if champion_rows else []
    return _TEMPLATES.get_template("gate_report.html.j2").render(
        # The example pairs as a labelled set, once: a download link `champion labels export` also reads.
        review_jsonl="".join(json.dumps(item, ensure_ascii=False) + "\n" for item in review),
        record=record,
        rows=rows,
        champion_rows=bool(champion_rows),
        primary=primary,
        judge=judge,
        fmt=format_number,
        forest=markupsafe.Markup(forest),
        slice_rows=slice_rows,
    )
