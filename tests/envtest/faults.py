"""A fault injector in front of the real API server: the one behaviour the server will not produce on demand.

``OverloadedFront`` answers the first ``failures`` requests with the 503 Status object an API server
(or the load balancer in front of it) returns while etcd elects a leader, then forwards every request
unchanged to the real kube-apiserver over TLS. It imitates nothing else: every answer after the failures
is the real server's.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UNAVAILABLE = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "etcdserver: leader changed",
    "reason": "ServiceUnavailable",
    "code": 503,
}


class OverloadedFront:
    def __init__(self, upstream_port: int, ca_file: str, *, failures: int) -> None:
        self.failures = failures
        self.answered_503 = 0
        lock = threading.Lock()
        front = self
        context = ssl.create_default_context(cafile=ca_file)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with lock:
                    fail = front.answered_503 < front.failures
                    front.answered_503 += fail
                if fail:
                    data = json.dumps(UNAVAILABLE).encode()
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                upstream = http.client.HTTPSConnection("127.0.0.1", upstream_port, context=context, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OverloadedFront:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
