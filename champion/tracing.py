"""OpenTelemetry traces of served requests and pipeline runs.

The SDK's tracer provider is set up once per process: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) in the environment, spans go to that collector (Jaeger, Tempo, an
OpenTelemetry Collector) over OTLP/HTTP in batches; without it spans are created and dropped: nothing is
exported, no connection is opened, nothing fails. Tests hand ``configure`` an in-memory exporter.

A pipeline run is one trace whose id comes from the run's id (``CHAMPION_RUN_ID``: the KFP run's UUID on a
cluster, read by every step from its pod's ``pipeline/runid`` label; a fresh UUID per local run). Every step
process opens its own span at start, a child of the run's root span, and ends it when the process exits (an
error status when an exception ended it), so a run on a cluster is traced without anything outside it. The
root span, and a span for each step KFP's cache answered (no process ran), are recorded by whoever watches the
run from outside: the local runner, or ``champion trigger`` from the KFP run object once the run ends. Both sides derive
the root's ids from the run id alone, so their spans meet in one trace.

Span attributes carry identities only (bundle id, prompt name@version, model digest, step names, the
decision word); never a question, an answer, a header or a secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from champion.bundle import Bundle

SERVICE = "champion"
RUN_ID_ENV = "CHAMPION_RUN_ID"
# On a cluster each step reads its run's id from its pod (pipelines/wiring.py); KFP labels every pod of a run.
RUN_ID_POD_FIELD = "metadata.labels['pipeline/runid']"
_lock = threading.Lock()
_provider: TracerProvider | None = None


class _RunIds(RandomIdGenerator):
    """Random ids, except for the one span a caller asks to have given ids (a run's root span)."""

    def __init__(self) -> None:
        self._next = threading.local()

    def given(self, trace_id: int, span_id: int) -> None:
        self._next.ids = (trace_id, span_id)

    def generate_trace_id(self) -> int:
        ids = getattr(self._next, "ids", None)
        return ids[0] if ids else super().generate_trace_id()

    def generate_span_id(self) -> int:
        ids, self._next.ids = getattr(self._next, "ids", None), None
        return ids[1] if ids else super().generate_span_id()


_ids = _RunIds()


def run_trace_id(run_id: str) -> int:
    """A run's trace id: its UUID's 128 bits (KFP run ids are UUIDs), else a digest of the id."""
    try:
        value = uuid.UUID(run_id).int
    except ValueError:
        value = 0
    return value or int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:16], "big") or 1


def run_root_span_id(run_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"champion-root:{run_id}".encode()).digest()[:8], "big") or 1


def run_context(run_id: str):
    """The context of a run's root span, whoever records it: a step's span is its child."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    root = SpanContext(
        run_trace_id(run_id), run_root_span_id(run_id), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return set_span_in_context(NonRecordingSpan(root))


def configured_endpoint() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or ""


def configure(exporter: SpanExporter | None = None, *, service: str = SERVICE) -> TracerProvider:
    """This process's provider: ``exporter`` (synchronous, for tests), else OTLP when an endpoint is configured,
    else none (spans are dropped)."""
    global _provider
    with _lock:
        provider = TracerProvider(
            resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)}), id_generator=_ids
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


def record_run(
    name: str, steps: dict[str, dict], attributes: dict, *, run_id: str, started_ns: int, ended_ns: int
) -> str:
    """The outside view of a pipeline run: its root span (ids from ``run_id``) and a span for each step that
    ran no process (``steps``: task -> {"start_ns", "end_ns", "state"}; only the "cached" ones are recorded
    here: a step that ran recorded its own span, see ``trace_step_process``). Returns the trace id (hex)."""
    run_tracer = tracer("champion.pipeline")
    _ids.given(run_trace_id(run_id), run_root_span_id(run_id))
    root = run_tracer.start_span(  # a root whatever span is current in the caller
        name, context=Context(), start_time=started_ns, attributes={"champion.run_id": run_id, **attributes}
    )
    for task, times in steps.items():
        if times["state"] == "cached":
            # Named by its step as a step's own process names its span (a loop's ``fetch-weights-op[0]`` is
            # the step ``fetch-weights-op``); the task, index included, is an attribute.
            step = task.split("[", 1)[0]
            attributes = {"champion.step": step, "champion.task": task, "champion.step_state": "cached"}
            run_tracer.start_span(
                step,
                context=run_context(run_id),
                start_time=times["start_ns"],
                attributes={**attributes, "champion.run_id": run_id},
            ).end(end_time=times["end_ns"])
    root.end(end_time=ended_ns)
    return format(root.get_span_context().trace_id, "032x")


def _argument(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else ""


def step_attributes(argv: list[str]) -> dict[str, object]:
    """What a step's span says about it, from the KFP executor's command line: the step (its component's
    name) and the ids of the bundles among its inputs. Identities only."""

    function = _argument(argv, "--function_to_execute")
    if not function:
        return {}
    attributes: dict[str, object] = {"champion.step": function.replace("_", "-")}
    try:
        values = json.loads(_argument(argv, "--executor_input"))["inputs"].get("parameterValues", {})
        if isinstance(values.get("bundle"), str) and values["bundle"]:
            attributes["champion.bundle_id"] = Bundle.model_validate_json(values["bundle"]).id
        if isinstance(values.get("bundles"), list):
            attributes["champion.bundle_ids"] = [Bundle.model_validate_json(b).id for b in values["bundles"]]
    except (ValueError, KeyError, TypeError):  # an input that is not a bundle names none
        pass
    return attributes


def trace_step_process(run_id: str, argv: list[str]) -> None:
    """In a pipeline step's process: a span for the step, child of the run's root, from now until the process
    exits; an error status (the exception's type, never its text) when an exception ends it. Only with an
    OTLP endpoint configured: otherwise nothing is set up at all."""
    import atexit
    import sys

    from opentelemetry.trace import Status, StatusCode

    if not configured_endpoint():
        return
    attributes = step_attributes(argv)
    if not attributes:
        return
    span = tracer("champion.pipeline").start_span(
        str(attributes["champion.step"]),
        context=run_context(run_id),
        attributes={**attributes, "champion.run_id": run_id},
    )
    previous = sys.excepthook

    def failed(kind, exc, traceback):
        span.set_status(Status(StatusCode.ERROR, kind.__name__))
        previous(kind, exc, traceback)

    def finish() -> None:
        span.end()
        shutdown()  # the batch goes out before the process does

    sys.excepthook = failed
    atexit.register(finish)
