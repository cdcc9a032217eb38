"""Any OpenAI-compatible chat endpoint: an in-cluster vLLM or KServe judge, or a hosted API.

The key is read from an environment variable (a Kubernetes secret fills it); it never appears in
the compiled pipeline, in logs or in reports.
"""

from __future__ import annotations

import os
from typing import Sequence

import requests

from champion.errors import BackendError
from generation import Conversation, Generation
from prompts import Decoding


def chat_request(model: str, conversation: Conversation, decoding: Decoding) -> dict:
    """The request body: every sampling field explicit, so the server's defaults never leak in."""
    body = {
        "model": model,
        "messages": list(conversation),
        "temperature": decoding.temperature,
        "top_p": decoding.top_p,
        "max_tokens": decoding.max_tokens,
        "seed": decoding.seed,
        "n": 1,
    }
    if decoding.stop:
        body["stop"] = list(decoding.stop)
    return body


def parse_chat_response(payload: dict) -> Generation:
    try:
        choice = payload["choices"][0]
        text = choice["message"]["content"] or ""
        usage = payload.get("usage") or {}
    except (KeyError, IndexError, TypeError) as exc:
        raise BackendError(
            f"the endpoint's reply is not an OpenAI chat completion: {str(payload)[:200]}",
            "check that base_url points at an OpenAI-compatible /v1 route.",
        ) from exc
    return Generation(
        text=text.strip(),
        finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


class OpenAIChatGenerator:
    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "",
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        retries: int = 2,
        **_ignored,
    ) -> None:
        if not base_url:
            raise BackendError(
                "the openai backend needs a base_url.",
                "set judge.base_url, e.g. http://judge.kserve.svc.cluster.local/openai/v1",
            )
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.timeout_s = timeout_s
        self.retries = retries
        self.session = requests.Session()
        key = os.environ.get(api_key_env, "")
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def generate(self, conversations: Sequence[Conversation], decoding: Decoding) -> list[Generation]:
        return [self._one(conversation, decoding) for conversation in conversations]

    def _one(self, conversation: Conversation, decoding: Decoding) -> Generation:
        last_error = ""
        for _attempt in range(self.retries + 1):
            try:
                response = self.session.post(
                    self.url, json=chat_request(self.model, conversation, decoding), timeout=self.timeout_s
                )
            except requests.RequestException as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in (401, 403):
                raise BackendError(
                    f"{self.url} refused the request ({response.status_code}).",
                    "check the API key variable and its secret.",
                )
            if response.status_code >= 500 or response.status_code == 429:
                last_error = f"HTTP {response.status_code}"
                continue
            if response.status_code != 200:
                raise BackendError(
                    f"{self.url} answered HTTP {response.status_code}: {response.text[:200]}",
                    "check the model name and request.",
                )
            return parse_chat_response(response.json())
        raise BackendError(
            f"{self.url} failed after {self.retries + 1} attempts ({last_error}).",
            "check that the endpoint is up and reachable from the pipeline.",
        )
