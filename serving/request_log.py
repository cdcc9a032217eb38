"""Request logging with the bundle's identity: one JSON record per served request, the same format everywhere.

The prompt transformer writes them (it is in front of the model on both serving paths, InferenceService
and LLMInferenceService, and in ``champion serve``): to a JSONL file (``CHAMPION_REQUEST_LOG``, local) and/or
as CloudEvents to a sink URL (``CHAMPION_REQUEST_LOG_URL``, a cluster's event broker or collector, the same
kind of sink KServe's own payload logger posts to). A record carries the bundle id, prompt version and
digest, model digest, decoding, latency and tokens. The question and the answer are recorded only when
content capture is switched on (``CHAMPION_LOG_CONTENT=true``), and then after every redaction hook has run:
secrets (detect-secrets' patterns) are always replaced, and ``CHAMPION_REDACTORS`` names more hooks
(``module:function``, each ``str -> str``). Headers are never recorded, so a bearer token cannot be.

These logs are what the shadow gate and ``champion replay`` pair, and what the scheduled evaluation can take
as its data.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from champion.errors import ConfigError, ServingError
from champion.request_records import RequestRecord
from evaluators.guards import secret_findings

LOG_PATH_ENV = "CHAMPION_REQUEST_LOG"
LOG_URL_ENV = "CHAMPION_REQUEST_LOG_URL"
CONTENT_ENV = "CHAMPION_LOG_CONTENT"
REDACTORS_ENV = "CHAMPION_REDACTORS"
EVENT_TYPE = "io.champion.request.v1"
RECORDS_ROUTE = "/records"  # where the log sink gives the records back (serving/log_sink.py)


def redact_secrets(text: str) -> str:
    """Replace every secret detect-secrets' pattern plugins find (the secrets guard's engine)."""

    for secret in secret_findings(text):
        text = text.replace(secret, "[REDACTED]")
    return text


def load_redactors(spec: str) -> list[Callable[[str], str]]:
    hooks: list[Callable[[str], str]] = [redact_secrets]
    for item in filter(None, (part.strip() for part in spec.split(","))):
        module, _, function = item.partition(":")
        try:
            hooks.append(getattr(importlib.import_module(module), function))
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(
                f"redaction hook {item!r} cannot be imported: {exc}",
                f"set {REDACTORS_ENV} to comma-separated module:function names of str -> str functions.",
            ) from exc
    return hooks


log = logging.getLogger(__name__)


class RequestLog:
    """Writes records to a JSONL file and/or a CloudEvents sink. Thread-safe; a failing sink never fails a
    request (the answer matters more than its record), it is counted in ``dropped``.

    A server calls ``submit``: redaction (a secrets scan), the file append and the sink's POST run on one
    background thread, in order, so a request never waits on them; pending records are written before the
    process exits. ``record`` does the same work in the caller's thread."""

    def __init__(
        self,
        path: str | Path | None = None,
        url: str = "",
        *,
        capture_content: bool = False,
        redactors: list[Callable[[str], str]] | None = None,
        source: str = "champion/transformer",
    ) -> None:
        self.path = Path(path) if path else None
        self.url = url
        self.capture_content = capture_content
        # Default: the secrets redactor and the hooks CHAMPION_REDACTORS names.
        self.redactors = redactors if redactors is not None else load_redactors(os.environ.get(REDACTORS_ENV, ""))
        self.source = source
        self.dropped = 0
        self._lock = threading.Lock()
        self._writer: ThreadPoolExecutor | None = None

    @classmethod
    def from_env(cls, environ=os.environ) -> RequestLog | None:
        path, url = environ.get(LOG_PATH_ENV, ""), environ.get(LOG_URL_ENV, "")
        if not path and not url:
            return None
        return cls(
            path or None,
            url,
            capture_content=environ.get(CONTENT_ENV, "").lower() in ("1", "true", "yes"),
            redactors=load_redactors(environ.get(REDACTORS_ENV, "")),
        )

    def submit(self, *, question: str | None, answer: str | None, **fields) -> Future:
        """``record`` on the background writer, stamped with the time of the request, not of the write."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request-log")
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        future = self._writer.submit(self.record, question=question, answer=answer, at=at, **fields)
        future.add_done_callback(self._count_failure)
        return future

    def _count_failure(self, future: Future) -> None:
        if future.exception() is not None:
            log.error("a request record could not be written: %s", future.exception())
            with self._lock:
                self.dropped += 1

    def _clean(self, text: str | None) -> str | None:
        if text is None or not self.capture_content:
            return None
        for hook in self.redactors:
            text = hook(text)
        return text

    def record(self, *, question: str | None, answer: str | None, at: str = "", **fields) -> RequestRecord:
        record = RequestRecord(
            time=at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            question=self._clean(question),
            answer=self._clean(answer),
            **fields,
        )
        line = record.model_dump_json()
        if self.path is not None:
            with self._lock, open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        if self.url:
            self._post(record, line)
        return record

    def _post(self, record: RequestRecord, line: str) -> None:
        import requests

        headers = {  # CloudEvents 1.0, binary content mode
            "ce-specversion": "1.0",
            "ce-type": EVENT_TYPE,
            "ce-source": self.source,
            "ce-id": record.request_id,
            "ce-time": record.time,
            "ce-subject": record.bundle_id,
            "content-type": "application/json",
        }
        try:
            requests.post(self.url, data=line.encode(), headers=headers, timeout=5).raise_for_status()
        except requests.RequestException:
            with self._lock:
                self.dropped += 1


def new_request_id() -> str:
    return uuid.uuid4().hex


def fetch_records(
    sink_url: str, *, bundle_id: str = "", since: str = "", timeout_s: float = 30.0
) -> list[RequestRecord]:
    """The records a log sink (serving/log_sink.py) holds, of ``bundle_id`` and at or after ``since`` when given."""
    import requests

    params = {key: value for key, value in (("bundle_id", bundle_id), ("since", since)) if value}
    try:
        response = requests.get(sink_url.rstrip("/") + RECORDS_ROUTE, params=params, timeout=timeout_s)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise ServingError(
            f"the request-log sink at {sink_url} did not give its records back: {type(exc).__name__}: {exc}"[:400],
            "check request_log_url: it must point at `python -m serving.log_sink` (reachable from the deploy step).",
            503,
        ) from exc
    try:
        return [RequestRecord.model_validate_json(line) for line in response.text.splitlines() if line.strip()]
    except ValueError as exc:
        raise ServingError(
            f"{sink_url}{RECORDS_ROUTE} answered something that is not champion request records: {str(exc)[:200]}",
            "point request_log_url at champion's log sink (`python -m serving.log_sink`).",
            502,
        ) from exc
