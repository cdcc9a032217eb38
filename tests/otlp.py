"""An OTLP/HTTP trace receiver on 127.0.0.1 for tests: what an OpenTelemetry Collector, Jaeger or Tempo would
be sent, decoded from the protobuf each exporter posts."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def attributes(span) -> dict:
        """A decoded span's attributes as plain values (strings, numbers, lists of strings)."""
        values = {}
        for attribute in span.attributes:
            kind = attribute.value.WhichOneof("value")
            value = getattr(attribute.value, kind)
            values[attribute.key] = [v.string_value for v in value.values] if kind == "array_value" else value
        return values
