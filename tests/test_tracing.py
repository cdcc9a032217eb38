"""Traces: one span per served request through the prompt transformer and on to the predictor (W3C trace
context carried over HTTP), exported over OTLP/HTTP only when an endpoint is configured (here to a real HTTP
receiver on 127.0.0.1 that decodes the protobuf), nothing otherwise, and never a question in an attribute."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from champion import tracing
from serving.openai_api import ChatRequest
from serving.transformer import PromptTransformer
from tests.answer_server import AnswerServer
from tests.test_shadow import LIVE, PROMPT

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"
QUESTION = "What is the capital of France?"


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    tracing.configure(exporter)
    yield exporter
    tracing.configure()  # back to the default: nothing exported


def ask(predictor: AnswerServer, **kwargs):
    transformer = PromptTransformer(
        "qa", PROMPT, predictor.url + "/openai", bundle_id=LIVE.id, model_digest=LIVE.model_digest
    )
    request = ChatRequest(model="qa", messages=[{"role": "user", "content": QUESTION}])
    return asyncio.run(transformer.chat(request, **kwargs))


def test_a_served_request_is_one_trace_through_transformer_and_predictor(spans):
    predictor = AnswerServer({PROMPT.render(question=QUESTION)[-1]["content"]: "Paris."})
    try:
        reply = ask(predictor, request_id="r-1", trace_headers={"traceparent": CALLER})
    finally:
        predictor.close()
    assert reply.text == "Paris."
    server, client = sorted(spans.get_finished_spans(), key=lambda s: s.name)
    assert server.name == "champion chat" and client.name == "predictor chat completion"
    # The caller's trace continues here, and the predictor is asked within it.
    assert format(server.context.trace_id, "032x") == CALLER_TRACE == format(client.context.trace_id, "032x")
    assert client.parent.span_id == server.context.span_id
    sent = predictor.requests[0]["headers"]["traceparent"]
    assert sent.split("-")[1] == CALLER_TRACE and sent.split("-")[2] == format(client.context.span_id, "016x")
    assert server.attributes["champion.bundle_id"] == LIVE.id
    assert server.attributes["champion.prompt"] == "qa-concise@1"
    assert server.attributes["gen_ai.usage.output_tokens"] == 3
    values = [str(v) for span in (server, client) for v in span.attributes.values()]
    assert not any("France" in value or "Paris" in value for value in values)  # identities, never content


def test_a_failed_request_is_an_error_span(spans):
    predictor = AnswerServer({})
    predictor.close()  # nobody answers
    with pytest.raises(Exception, match="unreachable"):
        ask(predictor)
    (server,) = [s for s in spans.get_finished_spans() if s.name == "champion chat"]
    assert server.status.status_code.name == "ERROR" and server.attributes["http.response.status_code"] == 503


def test_nothing_is_exported_without_an_endpoint(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    provider = tracing.configure()
    assert provider._active_span_processor._span_processors == ()  # spans are made and dropped
    with tracing.tracer().start_as_current_span("anything"):
        pass


class OTLPReceiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: decodes each ExportTraceServiceRequest it is sent."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list = []
        self.content_types: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.content_types.append(self.headers["Content-Type"])
                message = ExportTraceServiceRequest.FromString(body)
                for resource in message.resource_spans:
                    for scope in resource.scope_spans:
                        receiver.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_spans_go_to_the_configured_otlp_endpoint(monkeypatch):
    receiver = OTLPReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    tracing.configure()
    try:
        tracing.record_run(
            "champion-promotion",
            {"gate-op": {"start_ns": 1_000, "end_ns": 2_000, "state": "succeeded"}},
            {"champion.bundle_id": LIVE.id},
            started_ns=0,
            ended_ns=3_000,
        )
        tracing.shutdown()  # flush the batch
    finally:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        tracing.configure()
        receiver.server.shutdown()
    assert receiver.content_types == ["application/x-protobuf"]
    assert sorted(span.name for span in receiver.spans) == ["champion-promotion", "gate-op"]
    root = next(span for span in receiver.spans if span.name == "champion-promotion")
    assert {a.key: a.value.string_value for a in root.attributes}["champion.bundle_id"] == LIVE.id
