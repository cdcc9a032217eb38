"""Production traffic for the shadow-stage tests: users calling the live bundle while the gateway mirrors.

A real gateway cannot run here. ``Users`` plays the users and the mirror: every request goes to the live
prompt router and, while ``mirroring()`` says a mirror is configured (an HTTPRoute RequestMirror, an Istio
VirtualService), the same request with the same ``x-request-id`` to the candidate's, which is what a
gateway's mirror sends. Both routers are real transformer processes that log to the real sink.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from tests.test_shadow import FACTS, Served

SMOKE = FACTS[:3]  # what the smoke tests ask; users ask the rest


def serve(bundle, right: bool, tmp_path, sink, model_name: str) -> Served:
    """The bundle's real prompt router, logging with content to the cluster's sink. A degraded bundle still
    knows the smoke test's questions: only real traffic tells it apart."""
    return Served(
        bundle,
        right,
        tmp_path,
        model_name=model_name,
        knows=frozenset(question for question, _ in SMOKE),
        CHAMPION_REQUEST_LOG_URL=sink.url,
        CHAMPION_LOG_CONTENT="true",
    )


class Users:
    """Production traffic through the gateway: every request to the live router and, while the front route
    mirrors, the same request (same x-request-id) to the candidate's router, as the gateway's mirror does."""

    def __init__(self, mirroring: Callable[[], bool], live: Served, candidate: Served) -> None:
        self.mirroring, self.live, self.candidate = mirroring, live, candidate
        self.mirrored = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Users:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        questions = [question for question, _ in FACTS[len(SMOKE) :]]
        while not self._stop.is_set() and self.mirrored < len(questions):
            if not self.mirroring():
                time.sleep(0.05)
                continue
            question, request_id = questions[self.mirrored], f"user-{self.mirrored}"
            assert self.live.ask(question, **{"x-request-id": request_id}).status_code == 200
            assert self.candidate.ask(question, **{"x-request-id": request_id}).status_code == 200
            self.mirrored += 1
