"""Prometheus metrics of a served bundle, from the prompt transformer (on a cluster) and `champion serve`.

They are registered in prometheus-client's default registry, which KServe's model server already exposes at
``/metrics``: champion's series appear beside KServe's own (``request_predict_seconds`` …) on the same port.

Labels are bounded: ``bundle`` is the bundle's short id (one value per deployed bundle, so a canary's two
revisions are told apart) and ``prompt`` its ``name@version``; ``code`` is the status class (2xx, 4xx,
5xx). No label ever carries a question, an answer, a header or any other request content.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LABELS = ("bundle", "prompt")
# Seconds: a chat completion takes from tens of milliseconds (cached, tiny model) to minutes (long answers).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

REQUESTS = Counter("champion_requests", "Chat requests the bundle answered, by status class.", [*LABELS, "code"])
LATENCY = Histogram(
    "champion_request_latency_seconds",
    "Seconds from receiving a chat request to its answer (prompt rendering and the predictor's generation).",
    LABELS,
    buckets=LATENCY_BUCKETS,
)
PROMPT_TOKENS = Counter("champion_prompt_tokens", "Prompt tokens of the answered requests.", LABELS)
COMPLETION_TOKENS = Counter("champion_completion_tokens", "Completion tokens of the answered requests.", LABELS)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "5xx"


def observe(
    *, bundle_id: str, prompt: str, status: int, latency_s: float, prompt_tokens: int = 0, completion_tokens: int = 0
) -> None:
    """One served request."""
    labels = {"bundle": bundle_id[:12] or "unknown", "prompt": prompt}
    REQUESTS.labels(**labels, code=status_class(status)).inc()
    LATENCY.labels(**labels).observe(latency_s)
    if prompt_tokens:
        PROMPT_TOKENS.labels(**labels).inc(prompt_tokens)
    if completion_tokens:
        COMPLETION_TOKENS.labels(**labels).inc(completion_tokens)
