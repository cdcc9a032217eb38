"""OpenTelemetry traces of served requests and pipeline runs.

The SDK's tracer provider is set up once per process: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) in the environment, spans go to that collector (Jaeger, Tempo, an
OpenTelemetry Collector) over OTLP/HTTP in batches; without it spans are created and dropped: nothing is
exported, no connection is opened, nothing fails. Tests hand ``configure`` an in-memory exporter.

Span attributes carry identities only (bundle id, prompt name@version, model digest, step names, the
decision word); never a question, an answer, a header or a secret.
"""

from __future__ import annotations

import os
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

SERVICE = "champion"
_lock = threading.Lock()
_provider: TracerProvider | None = None


def configured_endpoint() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or ""


def configure(exporter: SpanExporter | None = None, *, service: str = SERVICE) -> TracerProvider:
    """This process's provider: ``exporter`` (synchronous, for tests), else OTLP when an endpoint is configured,
    else none (spans are dropped)."""
    global _provider
    with _lock:
        provider = TracerProvider(
            resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
        )
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif configured_endpoint():
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _provider = provider
        return provider


def tracer(name: str = "champion"):
    provider = _provider or configure()
    return provider.get_tracer(name)


def shutdown() -> None:
    """Flush what is batched (end of a command)."""
    if _provider is not None:
        _provider.shutdown()


def carrier_context(headers) -> object:
    """The trace context a caller sent (W3C ``traceparent``), to continue its trace."""
    from opentelemetry.propagate import extract

    return extract({k.lower(): v for k, v in dict(headers or {}).items()})


def inject_headers(headers: dict) -> dict:
    """``headers`` plus the current span's ``traceparent``, for the next hop (the predictor)."""
    from opentelemetry.propagate import inject

    inject(headers)
    return headers


def current_span_context():
    return trace.get_current_span().get_span_context()


def record_run(name: str, steps: dict[str, dict], attributes: dict, *, started_ns: int, ended_ns: int) -> str:
    """One trace for a pipeline run: a root span over the whole run and a child span per step, from the times the
    local runner recorded (``steps``: task -> {"start_ns", "end_ns", "state"}). Returns the trace id (hex)."""
    from opentelemetry.trace import Status, StatusCode, set_span_in_context

    run_tracer = tracer("champion.pipeline")
    root = run_tracer.start_span(name, start_time=started_ns, attributes=attributes)
    context = set_span_in_context(root)
    for step, times in steps.items():
        span = run_tracer.start_span(
            step,
            context=context,
            start_time=times["start_ns"],
            attributes={"champion.step": step, "champion.step_state": times["state"]},
        )
        if times["state"] == "failed":
            span.set_status(Status(StatusCode.ERROR, f"step {step} failed"))
        span.end(end_time=times["end_ns"])
    root.end(end_time=ended_ns)
    return format(root.get_span_context().trace_id, "032x")
