"""A deterministic judge behind a real OpenAI-compatible HTTP server on 127.0.0.1.

It stands in for a hosted or in-cluster judge model, which cannot run here. It follows the
OpenAI chat-completions contract (request body, response shape, bearer auth) and judges by a
transparent rule: an answer is correct when it contains the reference's key word.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _key(reference: str) -> str:
    words = [w for w in re.findall(r"[\w.]+", reference.lower()) if w not in {"the", "a", "an", "degrees"}]
    return words[0] if words else reference.lower()


def _contains(answer: str, reference: str) -> bool:
    return _key(reference) in answer.lower()


def scripted_rating(prompt: str) -> str:
    """ragas' answer-accuracy prompt: the last JSON input block, answered as {"rating": 0|4}."""
    block = json.loads(re.findall(r"input: (\{.*?\n\})", prompt, re.S)[-1])
    user, reference = block["user_answer"], block["reference_answer"]
    match = _contains(user, reference) or _contains(reference, user)
    return json.dumps({"rating": 4 if match else 0})


def scripted_verdict(prompt: str) -> str:
    if 'Return your response as JSON in this format: {"rating"' in prompt:
        return scripted_rating(prompt)
    reference = re.search(r"Reference answer: (.*)", prompt).group(1)
    if "Answer A:" in prompt:
        a = _contains(re.search(r"Answer A: (.*)", prompt).group(1), reference)
        b = _contains(re.search(r"Answer B: (.*)", prompt).group(1), reference)
        winner = "tie" if a == b else ("A" if a else "B")
        return f"Winner: {winner}\nReason: the winning answer states the reference."
    good = _contains(re.search(r"Candidate answer: (.*)", prompt).group(1), reference)
    return f"Score: {5 if good else 1}\nReason: {'matches' if good else 'contradicts'} the reference."


class JudgeServer:
    """Modes: "scripted" (always well-formed), "sloppy" (first reply to each prompt is unparseable, the repair works)."""

    def __init__(self, mode: str = "scripted", api_key: str | None = None) -> None:
        self.mode = mode
        self.api_key = api_key
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    return self._send(401, {"error": {"message": "invalid api key"}})
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                messages = body["messages"]
                prompt = next(m["content"] for m in messages if m["role"] == "user")
                repairing = messages[-1]["content"].startswith("Reply again")
                text = scripted_verdict(prompt)
                if server.mode == "sloppy" and not repairing:
                    text = "I think the answer looks fine overall."
                self._send(
                    200,
                    {
                        "id": "cmpl-1",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18},
                    },
                )

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "JudgeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
