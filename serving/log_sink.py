"""A CloudEvents sink for request records: what ``CHAMPION_REQUEST_LOG_URL`` points at on a cluster.

The prompt transformers post one CloudEvent per request (binary mode, ``ce-type: io.champion.request.v1``,
the record as the JSON body, serving/request_log.py). This sink validates each record and appends it to a
JSONL file in the same format ``champion serve`` writes, so ``champion replay`` and the shadow gate read
cluster traffic and local traffic alike. Anything else (another event type, a body that is not a record) is
refused with 400 and never written. ``GET /records`` gives them back (filtered by ``bundle_id`` and
``since``): the deploy step's shadow stage reads the mirrored pairs there. Run it as ``python -m serving.log_sink --output PATH --port 8080``
behind a Service (or as a Knative broker trigger's subscriber).
"""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from champion.request_records import RequestRecord
from serving.request_log import EVENT_TYPE, RECORDS_ROUTE


def _matches(record: RequestRecord, query: dict[str, str]) -> bool:
    return (not query.get("bundle_id") or record.bundle_id == query["bundle_id"]) and (
        not query.get("since") or record.time >= query["since"]
    )


class RequestLogSink:
    def __init__(self, output: str | Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.output = Path(output)
        self.received = 0
        self.refused = 0
        lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, message: str) -> None:
                data = message.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("ce-type") != EVENT_TYPE or self.headers.get("ce-specversion") != "1.0":
                    with lock:
                        sink.refused += 1
                    return self._answer(400, f"expected a CloudEvent 1.0 of type {EVENT_TYPE}")
                try:
                    record = RequestRecord.model_validate_json(body)
                except ValueError as exc:
                    with lock:
                        sink.refused += 1
                    return self._answer(400, f"not a champion request record: {str(exc)[:200]}")
                with lock, open(sink.output, "a", encoding="utf-8") as handle:
                    handle.write(record.model_dump_json() + "\n")
                    sink.received += 1
                self._answer(202, "")

            def do_GET(self):
                # The shadow stage reads the records back: GET /records?bundle_id=ID&since=ISO-TIME (both optional).
                url = urlsplit(self.path)
                if url.path != RECORDS_ROUTE:
                    return self._answer(404, f"records are at {RECORDS_ROUTE}")
                query = {key: values[-1] for key, values in parse_qs(url.query).items()}
                with lock:
                    lines = sink.output.read_text(encoding="utf-8").splitlines() if sink.output.exists() else []
                chosen = [
                    line for line in lines if line.strip() and _matches(RequestRecord.model_validate_json(line), query)
                ]
                data = "".join(line + "\n" for line in chosen).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/jsonl")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def __enter__(self) -> RequestLogSink:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="champion's request-record sink (CloudEvents in, JSONL out)")
    parser.add_argument("--output", required=True, help="JSONL file the records are appended to")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    RequestLogSink(args.output, host=args.host, port=args.port).serve_forever()


if __name__ == "__main__":
    main()
