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
    return re.search(rf"\b{re.escape(_key(reference))}\b", answer.lower()) is not None


def scripted_rating(prompt: str) -> str:
    """ragas' answer-accuracy prompt: the last JSON input block, answered as {"rating": 0|4}."""
    block = json.loads(re.findall(r"input: (\{.*?\n\})", prompt, re.S)[-1])
    user, reference = block["user_answer"], block["reference_answer"]
    match = _contains(user, reference) or _contains(reference, user)
    return json.dumps({"rating": 4 if match else 0})


HEDGES = ("i think", "i believe", "probably", "maybe", "might", "not sure", "not completely sure", "if i remember")
BIASES = (None, "position", "verbosity", "tone", "self_preference", "reference")


def _knowledge() -> dict[str, str]:
    """What the scripted judge "knows" without a reference: the references of the probes and labelled sets."""
    from champion.jsonl import read_jsonl
    from evaluators.reliability import LABELS_DIR, PROBES_DIR

    known = {}
    for path in [*PROBES_DIR.glob("*/*.jsonl"), *LABELS_DIR.glob("*.jsonl")]:
        for row in read_jsonl(path):
            known[row["question"]] = row["reference"]
    return known


class ScriptedJudge:
    """A transparent rule: an answer is right when it contains the reference's key word. ``bias`` plants
    one known failure of LLM judges and nothing else:

    - ``position``: two equally good (or bad) answers get "A" instead of "tie";
    - ``verbosity``: an answer three times longer than the other wins;
    - ``tone``: an answer without hedges beats one with them;
    - ``self_preference``: an answer it wrote itself (to a plain question) wins;
    - ``reference``: without a reference shown it cannot judge and says "A".
    """

    def __init__(self, bias: str | None = None, knows_answers: bool = False) -> None:
        if bias not in BIASES:
            raise ValueError(f"unknown bias {bias!r}")
        self.bias = bias
        self.knows_answers = knows_answers
        self.knowledge = _knowledge()
        self.own_answers: set[str] = set()

    def answer(self, prompt: str) -> str:
        """Its own answer to a plain question: "I do not know." unless it ``knows_answers`` (then the
        reference, and a made-up wrong answer when asked for one)."""
        if prompt.startswith("Give a plausible but wrong answer"):
            text = "It is surely Atlantis."
        elif self.knows_answers and prompt in self.knowledge:
            text = f"{self.knowledge[prompt]}."
        else:
            text = "I do not know."
        self.own_answers.add(text)
        return text

    def pairwise(self, prompt: str) -> str:
        question = re.search(r"Question: (.*)", prompt).group(1)
        shown = re.search(r"Reference answer: (.*)", prompt)
        a = re.search(r"Answer A: (.*)", prompt).group(1)
        b = re.search(r"Answer B: (.*)", prompt).group(1)
        if shown is None and self.bias == "reference":
            return "Winner: A\nReason: no reference to compare with."
        reference = shown.group(1) if shown else self.knowledge.get(question, "")
        a_ok, b_ok = _contains(a, reference), _contains(b, reference)
        if self.bias == "verbosity" and max(len(a), len(b)) >= 3 * min(len(a), len(b)):
            return f"Winner: {'A' if len(a) > len(b) else 'B'}\nReason: the more thorough answer."
        if self.bias == "tone":
            a_hedges, b_hedges = (any(h in x.lower() for h in HEDGES) for x in (a, b))
            if a_hedges != b_hedges:
                return f"Winner: {'B' if a_hedges else 'A'}\nReason: the more confident answer."
        if self.bias == "self_preference" and (a in self.own_answers) != (b in self.own_answers):
            return f"Winner: {'A' if a in self.own_answers else 'B'}\nReason: the better-phrased answer."
        if a_ok == b_ok:
            winner = "A" if self.bias == "position" else "tie"
        else:
            winner = "A" if a_ok else "B"
        return f"Winner: {winner}\nReason: the winning answer states the reference."

    def reply(self, prompt: str) -> str:
        if 'Return your response as JSON in this format: {"rating"' in prompt:
            return scripted_rating(prompt)
        if "Answer A:" in prompt:
            return self.pairwise(prompt)
        if "Candidate answer:" in prompt:
            reference = re.search(r"Reference answer: (.*)", prompt).group(1)
            good = _contains(re.search(r"Candidate answer: (.*)", prompt).group(1), reference)
            return f"Score: {5 if good else 1}\nReason: {'matches' if good else 'contradicts'} the reference."
        return self.answer(prompt)


def scripted_verdict(prompt: str) -> str:
    return ScriptedJudge().reply(prompt)


_FLIPPED = {"Winner: A": "Winner: B", "Winner: B": "Winner: A", "Winner: tie": "Winner: A"}


class JudgeServer:
    """Modes: "scripted" (always well-formed), "sloppy" (first reply to each prompt is unparseable, the repair
    works). ``bias``: see ScriptedJudge. ``noisy``: at a temperature above 0, a third of the seeds (seed % 3 == 0)
    flip a pairwise verdict, as a sampling judge's replies vary."""

    def __init__(
        self,
        mode: str = "scripted",
        api_key: str | None = None,
        bias: str | None = None,
        noisy: bool = False,
        knows_answers: bool = False,
    ) -> None:
        self.mode = mode
        self.api_key = api_key
        self.judge = ScriptedJudge(bias, knows_answers)
        self.noisy = noisy
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
                text = server.judge.reply(prompt)
                if server.noisy and body.get("temperature", 0) > 0 and body.get("seed", 0) % 3 == 0:
                    first, _, rest = text.partition("\n")
                    text = _FLIPPED.get(first, first) + "\n" + rest
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
