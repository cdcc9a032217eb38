"""A scripted model behind a real OpenAI-compatible chat route on 127.0.0.1 (what a deployed bundle
answers, for smoke tests of the rollout logic; the real serving stack is tested in test_serving.py).

``answers`` maps a question to its answer; anything else gets "I do not know." ``on_request`` runs
before each reply (to play something happening during a rollout).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class AnswerServer:
    def __init__(
        self,
        answers: dict[str, str],
        *,
        bundle_id: str = "",
        on_request: Callable[[], None] | None = None,
        path: str = "/openai/v1/chat/completions",  # llm-d's route: /<namespace>/<name>/v1/chat/completions
    ) -> None:
        self.answers = answers
        self.path = path
        self.bundle_id = bundle_id
        self.on_request = on_request
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                if server.on_request:
                    server.on_request()
                question = body["messages"][-1]["content"]
                text = server.answers.get(question, "I do not know.")
                reply = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "model": body.get("model", ""),
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 3},
                    }
                ).encode()
                self.send_response(200 if self.path == server.path else 404)
                self.send_header("Content-Type", "application/json")
                if server.bundle_id:
                    self.send_header("x-champion-bundle", server.bundle_id)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
