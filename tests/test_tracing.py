"""Traces: one span per served request through the prompt transformer and on to the predictor (W3C trace
context carried over HTTP), exported over OTLP/HTTP only when an endpoint is configured (here to a real HTTP
receiver on 127.0.0.1 that decodes the protobuf), nothing otherwise, and never a question in an attribute."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from champion import tracing
from serving.openai_api import ChatRequest
from serving.transformer import PromptTransformer
from tests.answer_server import AnswerServer
from tests.otlp import OTLPReceiver
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


RUN_ID = "0b8e6c3e-27f1-4b0e-9d1a-4f6f2c7d9a10"


def test_the_outside_view_of_a_run_is_its_root_and_the_steps_no_process_ran(monkeypatch):
    """The runner records the root (ids from the run id) and the cached steps; a step that ran records its own."""
    receiver = OTLPReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    tracing.configure()
    try:
        trace_id = tracing.record_run(
            "champion-promotion",
            {
                "gate-op": {"start_ns": 1_000, "end_ns": 2_000, "state": "succeeded"},
                "preprocess-data-op": {"start_ns": 500, "end_ns": 600, "state": "cached"},
                "fetch-weights-op[1]": {"start_ns": 700, "end_ns": 800, "state": "cached"},  # in the scoring loop
            },
            {"champion.bundle_id": LIVE.id},
            run_id=RUN_ID,
            started_ns=0,
            ended_ns=3_000,
        )
        tracing.shutdown()  # flush the batch
    finally:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        tracing.configure()
        receiver.close()
    assert receiver.content_types == ["application/x-protobuf"]
    # A cached step is named by its step, as a step's process names its own span; the loop index is an attribute.
    assert sorted(span.name for span in receiver.spans) == [
        "champion-promotion",
        "fetch-weights-op",
        "preprocess-data-op",
    ]
    looped = next(span for span in receiver.spans if span.name == "fetch-weights-op")
    assert OTLPReceiver.attributes(looped)["champion.task"] == "fetch-weights-op[1]"
    root = next(span for span in receiver.spans if span.name == "champion-promotion")
    cached = next(span for span in receiver.spans if span.name == "preprocess-data-op")
    assert trace_id == RUN_ID.replace("-", "") == root.trace_id.hex() == cached.trace_id.hex()  # the run's UUID
    assert int.from_bytes(root.span_id, "big") == tracing.run_root_span_id(RUN_ID) and not root.parent_span_id
    assert cached.parent_span_id == root.span_id
    assert OTLPReceiver.attributes(root)["champion.bundle_id"] == LIVE.id
    assert OTLPReceiver.attributes(cached)["champion.step_state"] == "cached"


def _step_process(receiver: OTLPReceiver, body: str, *, endpoint: bool = True):
    """A process started the way KFP's executor starts a step (``--function_to_execute``, ``--executor_input``)."""
    import json
    import os
    import subprocess
    import sys

    executor_input = {"inputs": {"parameterValues": {"bundles": [LIVE.model_dump_json()], "shards": 1}}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {tracing.RUN_ID_ENV: RUN_ID}
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"from champion.step_process import begin_step\nbegin_step()  # as every *_op does\n{body}",
        ]
        + ["--executor_input", json.dumps(executor_input), "--function_to_execute", "gate_op"],
        env=env,
        capture_output=True,
        text=True,
    )


def test_a_step_process_records_its_own_span_in_the_runs_trace():
    receiver = OTLPReceiver()
    try:
        ok = _step_process(receiver, "print('gating')")
        failed = _step_process(receiver, "raise ValueError('What is the capital of France?')")
        silent = _step_process(receiver, "print('gating')", endpoint=False)
    finally:
        receiver.close()
    assert ok.returncode == 0 and failed.returncode == 1 and silent.returncode == 0, failed.stderr
    assert "ValueError" in failed.stderr  # the traceback is still printed as usual
    assert len(receiver.spans) == 2  # nothing from the process without an endpoint
    for span in receiver.spans:
        assert span.name == "gate-op" and span.trace_id.hex() == RUN_ID.replace("-", "")
        assert int.from_bytes(span.parent_span_id, "big") == tracing.run_root_span_id(RUN_ID)
        attributes = OTLPReceiver.attributes(span)
        assert attributes["champion.bundle_ids"] == [LIVE.id] and attributes["champion.run_id"] == RUN_ID
    good, bad = sorted(receiver.spans, key=lambda span: span.status.code)
    assert good.status.code == 0 and bad.status.code == 2  # unset, error
    assert bad.status.message == "ValueError"  # the exception's type: its text may quote a question
