"""Smoke test of a served bundle: a few evaluation examples through its OpenAI-compatible chat route.

Clients of a deployment send plain messages; so does the smoke test. It passes when every request
succeeds, every answer names the bundle that produced it (the ``x-champion-bundle`` header the prompt
transformer sets) and that bundle is the one being deployed, and the answers' mean token F1 against the
references reaches the floor.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Sequence

import requests

from champion.errors import BackendError, ServingError
from evaluators.lexical import token_f1
from generation.openai_backend import parse_chat_response
from serving.openai_api import CHAT_ROUTE

BUNDLE_HEADER = "x-champion-bundle"


@dataclass
class SmokeResult:
    url: str
    passed: bool
    reason: str
    mean_token_f1: float = 0.0
    floor: float = 0.0
    errors: list[str] = field(default_factory=list)
    answers: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def ask_bundle(
    base_url: str,
    model: str,
    question: str,
    *,
    bundle_id: str,
    headers: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> str:
    """One plain question through a served bundle's chat route, as a client sends it. The answer, or a
    ServingError saying what went wrong: no answer, an HTTP error, an answer that names no bundle or
    another bundle than ``bundle_id`` (a prefix of the full id will do), a reply that is not a chat completion."""
    body = {"model": model, "messages": [{"role": "user", "content": question}]}
    try:
        response = requests.post(base_url.rstrip("/") + CHAT_ROUTE, json=body, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise ServingError(f"{type(exc).__name__}: {exc}"[:300], "check that the server is running.", 503) from exc
    if response.status_code != 200:
        raise ServingError(f"HTTP {response.status_code}: {response.text[:200]}", "see the server's log.", 502)
    served_bundle = response.headers.get(BUNDLE_HEADER, "")
    if not served_bundle:
        raise ServingError(
            f"the answer carries no {BUNDLE_HEADER} header, so nothing shows which bundle answered (is the prompt transformer in front?)",
            "serve the bundle behind champion's prompt transformer.",
            409,
        )
    if not served_bundle.startswith(bundle_id):
        raise ServingError(
            f"answered by bundle {served_bundle[:12]}, not {bundle_id[:12]}",
            "serve the expected bundle at that address.",
            409,
        )
    try:
        return parse_chat_response(response.json()).text
    except (BackendError, ValueError) as exc:
        raise ServingError(str(exc)[:300], "point at an OpenAI-compatible chat route.", 502) from exc


def smoke_test(
    base_url: str,
    model: str,
    examples: Sequence[dict],
    *,
    floor: float,
    bundle_id: str,
    token_env: str = "CHAMPION_SERVING_TOKEN",
    timeout_s: float = 60.0,
) -> SmokeResult:
    """POST each example's question to ``base_url`` + /openai/v1/chat/completions and score the answers."""
    if not bundle_id:
        return SmokeResult(
            base_url, False, "no bundle id was given; the smoke test cannot tell which bundle answered.", floor=floor
        )
    if not examples:
        return SmokeResult(
            base_url, False, "no smoke examples were given; an untested deployment is not promoted.", floor=floor
        )
    url = base_url.rstrip("/") + CHAT_ROUTE
    headers = {}
    if token := os.environ.get(token_env, ""):
        headers["Authorization"] = f"Bearer {token}"
    errors, answers, scores = [], [], []
    for example in examples:
        try:
            text = ask_bundle(
                base_url, model, example["question"], bundle_id=bundle_id, headers=headers, timeout_s=timeout_s
            )
        except ServingError as exc:
            errors.append(exc.problem)
            continue
        score = token_f1(text, example["reference"])
        scores.append(score)
        answers.append(
            {
                "id": example.get("id"),
                "question": example["question"],
                "answer": text,
                "reference": example["reference"],
                "token_f1": round(score, 4),
            }
        )
    mean = sum(scores) / len(scores) if scores else 0.0
    if errors:
        return SmokeResult(
            url,
            False,
            f"{len(errors)} of {len(examples)} smoke requests failed: {errors[0]}",
            mean,
            floor,
            errors,
            answers,
        )
    if mean < floor:
        return SmokeResult(
            url,
            False,
            f"mean token F1 {mean:.3f} on {len(examples)} examples is below the smoke floor {floor:.3f}.",
            mean,
            floor,
            errors,
            answers,
        )
    return SmokeResult(
        url,
        True,
        f"{len(examples)} requests answered; mean token F1 {mean:.3f} >= floor {floor:.3f}.",
        mean,
        floor,
        errors,
        answers,
    )
