"""The request record: one JSON object per served request, the format the prompt transformer writes
(``serving.request_log``), the log sink keeps, and the shadow gate, ``champion replay`` and a
request-log evaluation set read back.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict

from champion.errors import DataError


class RequestRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    time: str
    request_id: str
    bundle_id: str
    prompt: str  # name@version
    prompt_digest: str
    model_digest: str
    decoding: dict
    status: int
    latency_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    question: str | None = None  # content capture only
    answer: str | None = None


def read_request_log(path: str | Path) -> list[RequestRecord]:
    """Every record of a JSONL request log, each checked; a bad line is named."""
    records = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(RequestRecord.model_validate_json(line))
        except ValueError as exc:
            raise DataError(
                f"{path}, line {number} is not a champion request record: {str(exc)[:200]}",
                "pass a log written by champion's prompt transformer (CHAMPION_REQUEST_LOG).",
            ) from exc
    return records


def replayable(
    records: Iterable[RequestRecord], *, bundle_id: str = "", limit: int = 0, seed: int = 0
) -> list[RequestRecord]:
    """Answered requests with captured content (of ``bundle_id`` when given), one per distinct question,
    sampled down to ``limit`` reproducibly."""
    seen: dict[str, RequestRecord] = {}
    for record in records:
        if record.status != 200 or record.question is None or record.answer is None:
            continue
        if bundle_id and record.bundle_id != bundle_id:
            continue
        seen.setdefault(record.question, record)
    chosen = list(seen.values())
    if limit and len(chosen) > limit:
        chosen = random.Random(seed).sample(chosen, limit)
    return chosen
